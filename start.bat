@echo off
rem Installs Kubin on first run and starts it; arguments go to `python -m kubin`.
setlocal
set "DIR=%~dp0"
if not exist "%DIR%venv\.kubin-installed" call "%DIR%install.bat" || exit /b 1
"%DIR%venv\Scripts\python.exe" -m kubin %*
