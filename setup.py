"""Packaging beyond what pyproject.toml can say: the config tree lives at the top level (`conf/`)
and is installed inside the package as `sgdexp.conf`, so an installed sgdexp finds it."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["sgdexp", "sgdexp.*"]) + ["sgdexp.conf"],
    package_dir={"sgdexp.conf": "conf"},
    package_data={"sgdexp.conf": ["*.yaml", "**/*.yaml"]},
)
