# DSRG on Caffe with CUDA: a thin wrapper over the tested scripts (tools/setup.sh, run.sh).
#
#   docker build -t dsrg .
#   docker run --gpus all dsrg                                   # the synthetic demo, on GPU 0
#   docker run --gpus all -v /path/to/VOC2012:/data -v /path/to/weights:/weights -v "$PWD/runs:/opt/dsrg/runs" \
#       -e EXP=voc12-vgg16 -e PASCAL_DIR=/data -e INIT_WEIGHTS=/weights/vgg16_20M_mc.caffemodel dsrg
#
# Base: Debian 12 (the distribution the project is built and tested on; Caffe's source comes from
# Debian's signed bullseye index, and the pinned numpy needs Python >= 3.11) with NVIDIA's CUDA 13
# compiler and runtime from NVIDIA's Debian 12 repository; tools/setup.sh takes cuBLAS/cuRAND from
# PyPI's NVIDIA wheels (see caffe/build.sh) and builds Caffe for sm_80 and sm_90 with CAFFE_GPU=1.
FROM debian:12

ARG CUDA_VERSION_DASHED=13-0
ENV DEBIAN_FRONTEND=noninteractive
# Only what a fresh Debian 12 needs before the README's two commands (git, python3), plus
# ca-certificates for the HTTPS download of NVIDIA's keyring (tools/setup.sh installs it anyway):
# everything else comes from tools/setup.sh and tools/apt-packages.txt, as on a workstation
# (tools/check_fresh_machine.sh proves the same on a debootstrap root without Docker).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git python3 ca-certificates \
 && python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], "/tmp/cuda-keyring.deb")' \
      https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb \
 && dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb \
 && apt-get update \
 && apt-get install -y --no-install-recommends cuda-nvcc-${CUDA_VERSION_DASHED} cuda-cudart-dev-${CUDA_VERSION_DASHED} \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/local/cuda/bin:${PATH}

WORKDIR /opt/dsrg
COPY . .
# The same set-up script as on a workstation: apt packages (tools/apt-packages.txt, python3-venv and
# python3-dev among them), .venv, Caffe (CUDA build), CRF/, training/.
# CAFFE_GPU stays set so that run.sh's own set-up step finds this CUDA build in the cache.
ENV CAFFE_GPU=1
RUN bash tools/setup.sh

# run.sh uses GPU 0 here; EXP, PASCAL_DIR, INIT_WEIGHTS, RUN_DIR select the experiment (see README).
ENV GPU=0
CMD ["bash", "run.sh"]
