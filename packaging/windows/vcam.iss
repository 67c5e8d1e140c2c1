; Inno Setup 6.3+ script for vcam: installs the PyInstaller folder dist\vcam\ built by
; packaging/pyinstaller/vcam.spec. From the repository root:
;   pyinstaller packaging/pyinstaller/vcam.spec
;   iscc packaging\windows\vcam.iss                 (another version: iscc /DAppVersion=0.2.0 ...)
; The installer lands in dist\. Weights are not included: the last page offers `vcam weights fetch`.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{6F3C1A8E-52B4-4D0A-9C7E-1E8B4F2A7D35}
AppName=vcam
AppVersion={#AppVersion}
AppPublisher=vcam contributors
DefaultDirName={autopf}\vcam
DefaultGroupName=vcam
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
InfoBeforeFile=virtual-camera.txt
OutputDir=..\..\dist
OutputBaseFilename=vcam-{#AppVersion}-setup
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\vcam-tray.exe
CloseApplications=yes

[Tasks]
Name: "autostart"; Description: "Start vcam when I sign in to Windows"; Flags: unchecked

[Files]
Source: "..\..\dist\vcam\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\vcam"; Filename: "{app}\vcam-tray.exe"; Comment: "Neural-avatar virtual camera"
Name: "{group}\Uninstall vcam"; Filename: "{uninstallexe}"
Name: "{autostartup}\vcam"; Filename: "{app}\vcam-tray.exe"; Tasks: autostart

[Run]
Filename: "{app}\vcam.exe"; Parameters: "weights fetch"; Description: "Download the model weights now"; Flags: postinstall skipifsilent
Filename: "{app}\vcam-tray.exe"; Description: "Start vcam now"; Flags: nowait postinstall skipifsilent
