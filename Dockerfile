# One image for the Dataflow Flex Template launcher and the GPU workers (first version; the Flex Template
# issue finishes it). It cannot be built on the development machines (no Docker engine there).
ARG BEAM_VERSION=2.77.0

FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam_sdk
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base AS template_launcher

FROM python:3.11-slim
WORKDIR /template

# Beam's worker boot program and the Flex Template launcher, from images of the same Beam version.
COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam
COPY --from=template_launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

# The pinned tree first (a layer that changes rarely), then JAX's CUDA 12 wheels, then the project itself.
COPY requirements.lock .
# The local development model (gemma3-270m, gguf, safetensors) stays out: production loads a preset path.
RUN grep -vE '^(gemma3-270m|gguf|safetensors)' requirements.lock > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && pip install --no-cache-dir "jax[cuda12]==$(grep '^jax==' requirements.lock | cut -d= -f3)"
COPY pyproject.toml setup.py README.md ./
COPY pipeline pipeline
COPY handlers handlers
COPY prompts prompts
RUN pip install --no-cache-dir --no-deps . && pip check

# Keras picks its backend at import; JAX must not take the whole GPU from the Beam runtime beside it.
ENV KERAS_BACKEND=jax \
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.8 \
    FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/run.py

ENTRYPOINT ["/opt/apache/beam/boot"]
