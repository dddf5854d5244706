# DSRG on Caffe with CUDA, from Debian 12's packages and PyPI alone (no other download).
#
#   docker build -t dsrg .
#   docker run --gpus all dsrg                                   # the synthetic demo, on GPU 0
#   docker run --gpus all -v /path/to/voc12:/data:ro -v /path/to/weights:/weights:ro -v "$PWD/runs:/opt/dsrg/runs" \
#       -e EXP=voc12-vgg16 -e PASCAL_DIR=/data -e INIT_WEIGHTS=/weights/vgg16_20M_mc.caffemodel dsrg
#
# Stage "build" runs the workstation set-up, tools/setup.sh, with CAFFE_GPU=1: Debian's packages
# (tools/apt-packages.txt), .venv from PyPI, Caffe from Debian's source package built with nvcc, cudart,
# CCCL and NVVM from NVIDIA's PyPI wheels (caffe/build.sh, CAFFE_CUDA_TOOLKIT=wheels) and cuBLAS/cuRAND
# and NCCL (for tools/train.py --gpus: docs/multi-gpu.md) from PyPI, for sm_80 and sm_90. Stage
# "runtime" takes the built environment and, from Debian, only the packages that own the shared
# libraries it loads (tools/image_tree.sh): no compilers, headers, build trees, source packages or
# caches. tools/check_image.sh builds and checks it without a registry.
FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends git python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/dsrg
ENV CAFFE_GPU=1 CAFFE_CUDA_TOOLKIT=wheels DSRG_CACHE_DIR=/opt/dsrg-cache PIP_NO_CACHE_DIR=1
# The steps of tools/setup.sh that take long come first, each in a layer of its own that only its
# inputs invalidate, so that editing the code does not rebuild Caffe: Debian's packages, .venv, Caffe.
# tools/setup.sh then finds them done and adds the rest (CRF/, training/, the HED trunk).
COPY tools/apt-packages.txt tools/apt-packages.txt
RUN apt-get update \
 && sed 's/#.*//' tools/apt-packages.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
COPY python-dependencies.txt python-dependencies.txt
RUN python3 -m venv .venv && .venv/bin/python -m pip install --disable-pip-version-check -r python-dependencies.txt
COPY caffe caffe
RUN bash caffe/build.sh .venv
COPY . .
RUN bash tools/setup.sh \
 && bash tools/image_tree.sh runtime-packages /opt/runtime-packages.txt \
 && bash tools/image_tree.sh prune \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /tmp/*

FROM debian:12 AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/runtime-packages.txt /opt/runtime-packages.txt
RUN apt-get update \
 && xargs -a /opt/runtime-packages.txt apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY --from=build /opt/dsrg-cache /opt/dsrg-cache
COPY --from=build /opt/dsrg /opt/dsrg
WORKDIR /opt/dsrg
# The environment is complete (DSRG_SKIP_SETUP: run.sh and tools/test.sh leave tools/setup.sh alone).
# run.sh uses GPU 0 here (GPU= for CPU); EXP, PASCAL_DIR, INIT_WEIGHTS, RUN_DIR select the experiment.
ENV DSRG_CACHE_DIR=/opt/dsrg-cache DSRG_SKIP_SETUP=1 GPU=0
CMD ["bash", "run.sh"]
