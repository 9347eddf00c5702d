# One image for both roles on Dataflow: the Flex Template launcher (it builds the job's graph) and the
# workers' SDK container (it runs Gemma on the GPU). It cannot be built on the development machines (no
# Docker engine there): `make template-build` builds it with Cloud Build; tests/test_dockerfile.py checks
# what can be checked offline (versions, the locks, paths).

# The Beam version of pyproject.toml and both locks (a test keeps them all equal): the workers'
# boot program must come from the SDK that the job was built with.
ARG BEAM_VERSION=2.77.0
# The launcher image is rebuilt by Google; pin a dated tag here for fully repeatable builds.
ARG LAUNCHER_TAG=latest
# Only the CUDA runtime and the mount point of the driver: JAX brings its own CUDA 12 and cuDNN as pip
# wheels (jax[cuda12]), and Dataflow installs the NVIDIA driver on the VM (install-nvidia-driver) and mounts
# it at /usr/local/nvidia, which this image's LD_LIBRARY_PATH already names.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu22.04

FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam_sdk
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:${LAUNCHER_TAG} AS template_launcher

FROM ${CUDA_IMAGE}

# Python 3.11 (the version of pyproject.toml and of both images above) from the deadsnakes archive, which
# follows 3.11's patch releases; Ubuntu 22.04's own Python is 3.10.
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gpg-agent software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
# A virtual environment first on PATH: the boot program and the launcher both start `python` from PATH.
# Since Beam 2.44 the boot program makes a fresh virtual environment of its own for the SDK unless told
# not to, and one made from this venv's interpreter would not see the packages installed here.
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1

# Beam's worker boot program and the Flex Template launcher, copied in whole.
COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam
COPY --from=template_launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

WORKDIR /template

# The pinned tree first (a layer that changes rarely). requirements.lock holds exactly what the job needs,
# with JAX's CUDA 12 wheels (the gpu extra, at the job's JAX version) resolved together with it by
# `make lock`, and nothing that only development needs (the local model, the local stack, the test and lint
# tools: requirements-dev.lock). A current pip first: older ones reject, in hash-checking mode, a locked
# dependency asked for with extras (google-auth[pyopenssl]). Each line of the lock carries its hashes: pip
# installs nothing that is not locked and checks every file it downloads.
COPY requirements.lock .
RUN pip install --no-cache-dir --upgrade pip \
    && pip install --no-cache-dir --require-hashes -r requirements.lock

# The project itself, installed (not staged with FLEX_TEMPLATE_PYTHON_SETUP_FILE or a requirements file):
# this image is also the workers' container (sdk_container_image), so there is nothing to stage at launch.
# --no-deps: its dependencies are the lock's, installed above; pip check then proves that the lock holds
# all of them at versions the project accepts.
COPY pyproject.toml setup.py README.md ./
COPY pipeline pipeline
COPY handlers handlers
COPY prompts prompts
RUN pip install --no-cache-dir --no-deps . && pip check

# KERAS_BACKEND: Keras picks its backend at import.
# XLA_PYTHON_CLIENT_MEM_FRACTION: JAX takes this share of the GPU's memory when a process first uses it
# (default 0.75). Each RunInference step (triage, apology drafts) keeps its model in a process of its own per
# VM (share_model_across_processes), so two JAX processes share the L4: 0.4 each is 9.6 of its 24 GB, room
# for Gemma 2 2B in bfloat16 (about 5.2 GB) plus the KV cache of a batch (8 x 768 tokens, about 0.7 GB) and
# XLA's scratch, and leaves about 4.8 GB for the CUDA contexts and the Beam runtime.
# TF_FORCE_GPU_ALLOW_GROWTH: TensorFlow (KerasHub's tokenizers) would otherwise take all free GPU memory.
ENV KERAS_BACKEND=jax \
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/run.py

# The SDK boot program: workers start it; the Flex Template launcher VM runs its own launcher binary from
# the path above.
ENTRYPOINT ["/opt/apache/beam/boot"]
