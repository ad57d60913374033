#!/usr/bin/env python3
"""Build the installable plugin zip, or deploy the plugin into a QGIS profile.

    python scripts/package.py zip                 # dist/wetland_unet_plugin-<version>.zip
    python scripts/package.py deploy [--python P] # into the current QGIS profile

deploy honours QGIS_CUSTOM_CONFIG_PATH (the profile is then X/profiles/default),
enables the plugin there and records the worker Python (default: this
checkout's .venv), so QGIS and qgis_process find TensorFlow with no environment
variables set.
"""

import argparse
import configparser
import os
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "wetland_unet_plugin"
SKIP_DIRS = {"__pycache__", ".pytest_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def plugin_files():
    """Yield (source path, path inside the plugin folder) for everything the plugin ships."""
    package_dir = os.path.join(ROOT, PACKAGE)
    for base, relative_to in ((package_dir, package_dir), (os.path.join(ROOT, "resources"), ROOT)):
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in sorted(files):
                if name.endswith(SKIP_SUFFIXES) or name == "worker_python.txt":
                    continue
                path = os.path.join(folder, name)
                yield path, os.path.relpath(path, relative_to)
    for name in ("metadata.txt", "LICENSE", "README.md"):
        path = os.path.join(ROOT, name)
        if os.path.exists(path):
            yield path, name


def version():
    """The plugin version from metadata.txt."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "metadata.txt"))
    return parser["general"]["version"]


def build_zip(destination=None):
    """Write the zip QGIS's 'Install from ZIP' accepts; returns its path."""
    destination = destination or os.path.join(ROOT, "dist", f"{PACKAGE}-{version()}.zip")
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    tmp = destination + ".partial"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for source, inside in plugin_files():
            archive.write(source, f"{PACKAGE}/{inside}")
    os.replace(tmp, destination)
    return destination


def profile_dir():
    """The QGIS profile folder deploy installs into."""
    custom = os.environ.get("QGIS_CUSTOM_CONFIG_PATH")
    base = custom or os.path.expanduser("~/.local/share/QGIS/QGIS3")
    return os.path.join(base, "profiles", "default")


def enable_plugin(profile):
    """Mark the plugin enabled in the profile's QGIS3.ini (what the Plugin Manager does)."""
    ini_dir = os.path.join(profile, "QGIS")
    os.makedirs(ini_dir, exist_ok=True)
    ini = os.path.join(ini_dir, "QGIS3.ini")
    parser = configparser.RawConfigParser()
    parser.optionxform = str
    if os.path.exists(ini):
        parser.read(ini)
    if not parser.has_section("PythonPlugins"):
        parser.add_section("PythonPlugins")
    parser.set("PythonPlugins", PACKAGE, "true")
    with open(ini, "w") as handle:
        parser.write(handle, space_around_delimiters=False)


def deploy(python=None):
    """Copy the plugin into the profile, enable it and record the worker Python."""
    profile = profile_dir()
    target = os.path.join(profile, "python", "plugins", PACKAGE)
    if os.path.isdir(target):
        shutil.rmtree(target)
    for source, inside in plugin_files():
        path = os.path.join(target, inside)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy2(source, path)
    python = os.path.abspath(python or os.path.join(ROOT, ".venv", "bin", "python"))
    with open(os.path.join(target, "worker_python.txt"), "w") as handle:
        handle.write(python + "\n")
    enable_plugin(profile)
    qgis_process = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"
    if os.path.exists(qgis_process):
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        subprocess.run(
            [qgis_process, "plugins", "enable", PACKAGE],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    return target, python


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    z = sub.add_parser("zip")
    z.add_argument("--output")
    d = sub.add_parser("deploy")
    d.add_argument("--python", help="worker Python with TensorFlow (default: .venv)")
    args = parser.parse_args(argv)
    if args.command == "zip":
        print(build_zip(args.output))
    else:
        target, python = deploy(args.python)
        print(
            f"deployed to {target}\nworker Python: {python}\n"
            f"check: /usr/bin/qgis_process.bin list | grep wetlandunet"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
