"""Package discovery only (metadata lives in pyproject.toml).

adapters/ and plugins/ sit at the top of the repository but install as
reidkit.adapters and reidkit.plugins, so that no bare top-level package
ever lands in site-packages.
"""
from setuptools import find_packages, setup

ROOTS = {"reidkit": "reidkit", "reidkit.adapters": "adapters", "reidkit.plugins": "plugins"}


def namespaced_packages():
    packages = []
    for package, folder in ROOTS.items():
        packages.append(package)
        packages += [f"{package}.{sub}" for sub in find_packages(folder)]
    return sorted(set(packages))


setup(packages=namespaced_packages())
