#!/usr/bin/env bash
# Builds and launches the chat-triage Flex Template on Dataflow: `make template-build` and `make template-run`
# call it. Every setting is a variable, read from the environment (make passes its command-line variables)
# or, for those not set there, from dataflow.env (DATAFLOW_ENV names another file; copy
# templates/dataflow.env.example). It prints each gcloud command before running it; DRY_RUN=1 prints only.
#
#   scripts/dataflow.sh build   image (Cloud Build) + template spec for TEMPLATE (streaming, the default, or replay)
#   scripts/dataflow.sh run     the TEMPLATE's job on GPU workers: the streaming job (UPDATE=1 replaces the
#                               running job in place), or the replay of its dead letters (a batch job)
set -euo pipefail

cd "$(dirname "$0")/.."

usage() {
    sed -n '2,8s/^# \{0,1\}//p' "$0"
}

# KEY=VALUE lines; a variable already in the environment wins, so a command line overrides the file.
load_env_file() {
    local file=$1 key value
    [[ -f $file ]] || return 0
    while IFS='=' read -r key value || [[ -n $key ]]; do
        [[ $key =~ ^[A-Z][A-Z0-9_]*$ ]] || continue
        value=${value%\"}; value=${value#\"}
        [[ -n ${!key:-} ]] || export "$key=$value"
    done < "$file"
}

# Stops with one message that names every missing variable, not just the first.
require() {
    local missing=() name
    for name in "$@"; do
        [[ -n ${!name:-} ]] || missing+=("$name")
    done
    if ((${#missing[@]})); then
        echo "error: set ${missing[*]} (in ${DATAFLOW_ENV} or on the command line," \
            "e.g. make template-$COMMAND ${missing[0]}=...); see README, 'Production on Dataflow'." >&2
        exit 2
    fi
}

fail() {
    echo "error: $*" >&2
    exit 2
}

# Prints the command as a shell line that can be pasted, then runs it unless DRY_RUN=1.
execute() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    [[ ${DRY_RUN:-0} == 1 ]] && return 0
    command -v "$1" > /dev/null || fail "$1 is not installed (Debian: apt-get install google-cloud-cli)"
    "$@"
}

# gcloud splits --parameters at commas; a value with a comma (a JSON sampler) needs another delimiter.
parameter() {
    local pair=$1
    if [[ $pair == *,* ]]; then
        echo "--parameters=^~^$pair"
    else
        echo "--parameters=$pair"
    fi
}

# The settings both commands share, with their defaults.
common_settings() {
    require PROJECT REGION BUCKET REPOSITORY
    [[ $BUCKET != gs://* ]] || fail "BUCKET is a bucket name, without gs:// (got $BUCKET)"
    METADATA_FILE="templates/$TEMPLATE/metadata.json"
    [[ -f $METADATA_FILE ]] || fail "no template $TEMPLATE: $METADATA_FILE does not exist"
    # The project version by default, so build and run agree on the image without extra settings.
    IMAGE_TAG=${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)}
    IMAGE=${IMAGE:-$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/chat-triage:$IMAGE_TAG}
    TEMPLATE_PATH=${TEMPLATE_PATH:-gs://$BUCKET/templates/chat-triage-$TEMPLATE-$IMAGE_TAG.json}
    # A template with a Dockerfile of its own launches from a layer over IMAGE (templates/replay/Dockerfile).
    LAUNCHER_IMAGE=$IMAGE
    [[ ! -f templates/$TEMPLATE/Dockerfile ]] || LAUNCHER_IMAGE=${IMAGE%:*}-$TEMPLATE:${IMAGE##*:}
}

build() {
    common_settings
    if [[ ${BUILD_IMAGE:-1} == 1 ]]; then
        echo "Building the image $IMAGE with Cloud Build, then the template spec $TEMPLATE_PATH."
        # CUDA, JAX's CUDA wheels and TensorFlow make a large image: more time and CPUs than the defaults.
        execute gcloud builds submit . --project="$PROJECT" --region="$REGION" --tag="$IMAGE" \
            --timeout=2h --machine-type="${BUILD_MACHINE_TYPE:-e2-highcpu-8}"
    else
        echo "BUILD_IMAGE=0: using the image $IMAGE as it is; building the template spec $TEMPLATE_PATH."
    fi
    if [[ $LAUNCHER_IMAGE != "$IMAGE" ]]; then
        echo "Building the $TEMPLATE launcher image $LAUNCHER_IMAGE from $IMAGE."
        execute gcloud builds submit "templates/$TEMPLATE" --project="$PROJECT" --region="$REGION" \
            --config="templates/$TEMPLATE/cloudbuild.yaml" \
            --substitutions="_IMAGE=$IMAGE,_LAUNCHER_IMAGE=$LAUNCHER_IMAGE"
    fi
    execute gcloud dataflow flex-template build "$TEMPLATE_PATH" --project="$PROJECT" \
        --image="$LAUNCHER_IMAGE" --sdk-language=PYTHON --metadata-file="$METADATA_FILE"
}

run() {
    local job_settings sinks
    case $TEMPLATE in
        streaming) job_settings=(INPUT_SUBSCRIPTION) sinks=() ;;
        # The replay drains the dead-letter subscription, unless PARAM_INPUT names files to replay instead.
        replay) job_settings=(DEAD_LETTER_SUBSCRIPTION) sinks=(PARKED_TOPIC)
            [[ -z ${PARAM_INPUT:-} ]] || job_settings=() ;;
        *) fail "no template $TEMPLATE (streaming or replay)" ;;
    esac
    require PROJECT REGION BUCKET REPOSITORY MODEL_PRESET "${job_settings[@]}" BIGQUERY_TABLE REVIEW_TOPIC \
        DEAD_LETTER_TOPIC "${sinks[@]}"
    common_settings
    [[ $MODEL_PRESET == gs://* || $MODEL_PRESET == kaggle://* ]] \
        || fail "MODEL_PRESET is a gs:// or kaggle:// KerasHub preset (got $MODEL_PRESET)"
    local job=${JOB_NAME:-chat-triage-$TEMPLATE}
    local accelerator=${ACCELERATOR:-type:nvidia-l4;count:1;install-nvidia-driver}
    local machine=${MACHINE_TYPE:-g2-standard-4}
    local verb=Launching
    [[ ${UPDATE:-0} != 1 ]] || verb="Updating the running"
    echo "$verb job $job in $REGION from $TEMPLATE_PATH: $machine workers with $accelerator," \
        "model $MODEL_PRESET."
    local args=(
        gcloud dataflow flex-template run "$job"
        --project="$PROJECT" --region="$REGION" --template-file-gcs-location="$TEMPLATE_PATH"
        --staging-location="gs://$BUCKET/staging" --temp-location="gs://$BUCKET/tmp"
        --worker-machine-type="$machine"
    )
    local pairs=(
        "sdk_container_image=$IMAGE" "dataflow_service_options=worker_accelerator=$accelerator"
        "disk_size_gb=${DISK_SIZE_GB:-50}"
    )
    if [[ $TEMPLATE == streaming ]]; then
        args+=(--enable-streaming-engine --additional-experiments=use_runner_v2
            --num-workers="${NUM_WORKERS:-1}" --max-workers="${MAX_WORKERS:-2}")
        pairs+=("input_subscription=$INPUT_SUBSCRIPTION")
    else
        # A batch job: it ends when the subscription is drained and the replayed chats are written.
        [[ ${UPDATE:-0} != 1 ]] || fail "UPDATE=1 replaces a running streaming job; the replay is a batch job"
        args+=(--additional-experiments=use_runner_v2 --num-workers="${NUM_WORKERS:-1}"
            --max-workers="${MAX_WORKERS:-1}")
        [[ -n ${PARAM_INPUT:-} ]] || pairs+=("input_subscription=$DEAD_LETTER_SUBSCRIPTION")
        pairs+=("parked_topic=$PARKED_TOPIC")
    fi
    [[ -z ${SERVICE_ACCOUNT:-} ]] || args+=(--service-account-email="$SERVICE_ACCOUNT")
    [[ ${UPDATE:-0} != 1 ]] || args+=(--update)
    # Beam and Dataflow options that the template's metadata does not declare (the first three): the workers
    # run this same image, on a GPU, with room on disk for it.
    pairs+=("bigquery_table=$BIGQUERY_TABLE" "review_topic=$REVIEW_TOPIC" "dead_letter_topic=$DEAD_LETTER_TOPIC"
        "model=$MODEL_PRESET")
    # Any other template parameter as PARAM_<NAME>: PARAM_MAX_BATCH_SIZE=16 sets max_batch_size.
    local var
    for var in $(compgen -e | grep '^PARAM_' | sort); do
        local name=${var#PARAM_}
        pairs+=("${name,,}=${!var}")
    done
    local pair
    for pair in "${pairs[@]}"; do
        args+=("$(parameter "$pair")")
    done
    execute "${args[@]}"
}

COMMAND=${1:-}
DATAFLOW_ENV=${DATAFLOW_ENV:-dataflow.env}
load_env_file "$DATAFLOW_ENV"
TEMPLATE=${TEMPLATE:-streaming}
case $COMMAND in
    build) build ;;
    run) run ;;
    *) usage >&2; exit 2 ;;
esac
