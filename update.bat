@echo off
rem Pulls the latest Kubin and reinstalls its requirements.
setlocal
set "DIR=%~dp0"
git -C "%DIR%." pull --ff-only || exit /b 1
call "%DIR%install.bat"
