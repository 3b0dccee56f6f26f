@echo off
rem Creates venv\ beside this script and installs Kubin into it (same steps as install.sh).
setlocal
set "DIR=%~dp0"
if not exist "%DIR%venv\Scripts\python.exe" (
  echo Creating %DIR%venv ...
  python -m venv "%DIR%venv" || exit /b 1
)
"%DIR%venv\Scripts\python.exe" -m pip install --upgrade pip || exit /b 1
"%DIR%venv\Scripts\python.exe" -m pip install -r "%DIR%requirements.txt" || exit /b 1
rem CUDA-only extras (bitsandbytes) where an NVIDIA driver is present
where nvidia-smi >nul 2>nul && ("%DIR%venv\Scripts\python.exe" -m pip install -r "%DIR%requirements-cuda.txt" || exit /b 1)
"%DIR%venv\Scripts\python.exe" -m pip install --no-deps -e "%DIR%." || exit /b 1
echo done> "%DIR%venv\.kubin-installed"
