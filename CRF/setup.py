"""Build of the krahenbuhl2013 extension (C++17 + Eigen, Cython binding).

Eigen 3 headers are looked up in $EIGEN3_INCLUDE_DIR if set, else in the usual system
locations (Debian/Ubuntu: apt-get install libeigen3-dev). Compiler flags are portable:
-O3 and, on x86-64, the x86-64-v2 baseline (SSE4.2); set KRAHENBUHL2013_CFLAGS to
replace the optimisation flags (e.g. "-O3 -march=native" for a local-only build).
"""
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent


def eigen_include_dir():
    override = os.environ.get("EIGEN3_INCLUDE_DIR")
    candidates = [override] if override else [
        os.path.join(sys.prefix, "include", "eigen3"),
        "/usr/include/eigen3",
        "/usr/local/include/eigen3",
        "/opt/homebrew/include/eigen3",
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(os.path.join(candidate, "Eigen", "Core")):
            return candidate
    raise RuntimeError("krahenbuhl2013: Eigen 3 headers not found (looked for Eigen/Core in %s); install "
                       "libeigen3-dev or set EIGEN3_INCLUDE_DIR" % ", ".join(c for c in candidates if c))


def optimisation_flags():
    override = os.environ.get("KRAHENBUHL2013_CFLAGS")
    if override is not None:
        return shlex.split(override)
    flags = ["-O3"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags.append("-march=x86-64-v2")
    return flags


extension = Extension(
    "krahenbuhl2013._native",
    sources=["krahenbuhl2013/_native.pyx", "src/dense_crf.cc", "src/permutohedral_lattice.cc"],
    include_dirs=["src", eigen_include_dir(), numpy.get_include()],
    language="c++",
    extra_compile_args=["-std=c++17", "-pthread", "-DEIGEN_MPL2_ONLY", "-Wno-psabi"] + optimisation_flags(),
    extra_link_args=["-pthread"],
)

setup(ext_modules=cythonize([extension], compiler_directives={"language_level": "3"}))
