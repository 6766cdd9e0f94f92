from setuptools import find_packages, setup

setup(
    name="gpuprep",
    version="0.1.0",
    description="Turn a GPU instance into a sealed, self-testing ECS / AWS Batch container host; diagnose GPU hosts.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.8",
    packages=find_packages(include=["gpuprep", "gpuprep.*"]),
    package_data={"gpuprep": ["data/*"]},
    install_requires=[
        "docker>=7.1",
        "psutil>=5.9",
        "distro>=1.8",
        "tenacity>=8.2",
        # typer 0.29 made pydantic a dependency and imports it on every run: ~60 ms more for each
        # gpuprep command, the boot gate's included (bench/RESULTS.md). Lift the cap when that changes.
        "typer>=0.12,<0.29",
        "rich>=13.0",
        "nvidia-ml-py>=12.535",
        # CDI specs are YAML (gpuprep/toolkit/cdi.py says why a parser of our own would not do); AL2023 ships it
        # as python3-pyyaml, and PyPI has wheels for every Python gpuprep supports.
        "PyYAML>=5.4",
    ],
    extras_require={
        # ansible-core drives the fleet tests (integrations/ansible) against booted simulated hosts;
        # jsonschema checks the SSM and Image Builder documents against integrations/schemas/.
        "test": ["pytest>=7.4", "pytest-timeout>=2.2", "hypothesis>=6.90", "ruff>=0.4",
                 "ansible-core>=2.15", "jsonschema>=4.17"],
    },
    entry_points={"console_scripts": ["gpuprep = gpuprep.cli:main"]},
    classifiers=[
        "Environment :: Console",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Systems Administration",
    ],
)
