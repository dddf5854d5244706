"""Training snapshots that survive a full disk, a kill and a copied run folder (tools/train.py).

A snapshot is the pair PREFIX_iter_N.caffemodel + PREFIX_iter_N.solverstate. Caffe writes them in
place and aborts the process when a write fails, leaving a half-written .solverstate that every later
resume trips over. Here:

- Caffe writes each snapshot into a staging folder beside the snapshots (STAGING_NAME), and the two
  files are then renamed into place, the .solverstate last: a snapshot is either complete in the
  snapshot folder or absent from it. Whatever a killed write left in the staging folder is cleared
  at the next start.
- Before writing, the free space is compared with the size of the last snapshot (or an estimate from
  the parameter count): too little is a SnapshotError naming the folder, the sizes and the cause,
  raised before Caffe could abort.
- Resuming verifies the snapshot first (both files parse; the history holds one blob per learnable
  blob, two for Adam and AdaDelta, each complete; the weights fit the net) and falls back to the
  previous snapshot, saying so, when it does not. The unusable files are renamed `*.unusable`.
- A .solverstate names its weights by absolute path; resuming always reads the .caffemodel beside
  the .solverstate, so a copied run folder resumes from its own weights.
"""
import os
import re
import shutil
from pathlib import Path

from pylayers.netio import WeightsError, caffe_protos, caffemodel_blob_shapes, matching_layers, net_blob_shapes

STAGING_NAME = ".staging"
# Solver types whose history holds two blobs per learnable blob (Caffe's AdamPreSolve and
# AdaDeltaPreSolve append a second set after SGDSolver::PreSolve's).
TWO_HISTORY_SOLVERS = {"Adam", "AdaDelta"}
# The free space a snapshot needs, as a multiple of the last snapshot's size (or of the estimate).
SPACE_MARGIN = 1.1


class SnapshotError(OSError):
    """A snapshot that cannot be written, or no usable snapshot to resume from."""


def staging_prefix(prefix):
    """The prefix Caffe writes snapshots to: `prefix`'s name in the staging folder beside it."""
    prefix = Path(prefix)
    return prefix.parent / STAGING_NAME / prefix.name


def clear_staging(prefix):
    """Remove what an interrupted snapshot left in the staging folder; returns the names removed."""
    staging = staging_prefix(prefix).parent
    removed = []
    if staging.is_dir():
        for path in sorted(staging.iterdir()):
            path.unlink()
            removed.append(path.name)
    staging.mkdir(parents=True, exist_ok=True)
    return removed


def snapshot_files(prefix):
    """{iteration: (solverstate path, caffemodel path)} for the complete snapshots of `prefix`."""
    prefix = Path(prefix)
    pattern = re.compile(re.escape(prefix.name) + r"_iter_(\d+)\.solverstate$")
    found = {}
    if prefix.parent.is_dir():
        for path in prefix.parent.iterdir():
            match = pattern.match(path.name)
            if not match:
                continue
            weights = path.with_suffix(".caffemodel")
            if path.stat().st_size > 0 and weights.is_file() and weights.stat().st_size > 0:
                found[int(match.group(1))] = (path, weights)
    return found


def remove_snapshot(state_path, weights_path):
    for path in (state_path, weights_path):
        if Path(path).exists():
            Path(path).unlink()


def rotate_snapshots(prefix, keep, protect_from=None):
    """Keep the `keep` newest snapshots; with `protect_from`, only those taken before that iteration
    count (and may go), so that the ones before a suspect stretch of training survive it."""
    snapshots = snapshot_files(prefix)
    candidates = sorted(i for i in snapshots if protect_from is None or i < protect_from)
    for old_iter in candidates[:-keep]:
        remove_snapshot(*snapshots[old_iter])


def remove_snapshots_from(prefix, iteration):
    """Remove the snapshots taken at `iteration` or later (their weights gave a diverged output)."""
    for later_iter, files in snapshot_files(prefix).items():
        if later_iter >= iteration:
            remove_snapshot(*files)


def learnable_blob_count(net):
    """The number of parameter blobs of `net` (Caffe's learnable_params_ for a net without shared
    parameters: those with lr_mult 0 included)."""
    return sum(len(blobs) for blobs in net.params.values())


def expected_history(net, solver_type):
    return learnable_blob_count(net) * (2 if solver_type in TWO_HISTORY_SOLVERS else 1)


def needed_bytes(prefix, net, solver_type):
    """The free space a new snapshot needs: the last complete snapshot's size, else 4 bytes per
    parameter value for the weights and each history set; times SPACE_MARGIN."""
    snapshots = snapshot_files(prefix)
    if snapshots:
        size = sum(Path(path).stat().st_size for path in snapshots[max(snapshots)])
    else:
        values = sum(blob.data.size for blobs in net.params.values() for blob in blobs)
        size = 4 * values * (1 + (2 if solver_type in TWO_HISTORY_SOLVERS else 1))
    return int(size * SPACE_MARGIN)


def take_snapshot(solver, prefix, solver_type):
    """Snapshot `solver` at its current iteration into `prefix`'s folder through the staging folder.
    Returns the .solverstate path. Raises SnapshotError (nothing written, earlier snapshots kept)
    when the folder lacks the space or a file cannot be moved into place."""
    prefix = Path(prefix)
    iteration = solver.iter
    staging = staging_prefix(prefix)
    staging.parent.mkdir(parents=True, exist_ok=True)
    need = needed_bytes(prefix, solver.net, solver_type)
    free = shutil.disk_usage(staging.parent).free
    if free < need:
        raise SnapshotError(f"cannot write the snapshot at iteration {iteration} to {prefix.parent}: it needs "
                            f"about {need / 2 ** 20:.1f} MB, {free / 2 ** 20:.1f} MB are free (No space left on "
                            "device); the earlier snapshots are kept and a rerun with more space resumes from the "
                            "last of them")
    solver.snapshot()
    written = Path(f"{staging}_iter_{iteration}")
    final = Path(f"{prefix}_iter_{iteration}")
    try:
        for suffix in (".caffemodel", ".solverstate"):
            os.replace(written.with_name(written.name + suffix), final.with_name(final.name + suffix))
    except OSError as error:
        raise SnapshotError(f"cannot move the snapshot at iteration {iteration} into {prefix.parent}: "
                            f"{error.strerror}") from error
    return final.with_name(final.name + ".solverstate")


def read_solver_state(state_path):
    from google.protobuf.message import DecodeError

    state = caffe_protos().SolverState()
    try:
        state.ParseFromString(Path(state_path).read_bytes())
    except DecodeError as error:
        raise SnapshotError(f"{state_path}: not a complete solver state ({error})") from None
    return state


def snapshot_problem(state_path, weights_path, net, solver_type):
    """Why the snapshot cannot be resumed from (a sentence), or None when it can."""
    try:
        state = read_solver_state(state_path)
    except (SnapshotError, OSError) as error:
        return str(error)
    expected = expected_history(net, solver_type)
    if len(state.history) != expected:
        return (f"{state_path}: {len(state.history)} history blobs, the net and a {solver_type} solver need "
                f"{expected} (a file cut short)")
    for index, blob in enumerate(state.history):
        shape = tuple(blob.shape.dim) if blob.HasField("shape") else (blob.num, blob.channels, blob.height,
                                                                       blob.width)
        size = 1
        for dim in shape:
            size *= dim
        if len(blob.data) + len(blob.double_data) != size:
            return f"{state_path}: history blob {index} holds {len(blob.data)} of {size} values"
    try:
        shapes = caffemodel_blob_shapes(weights_path)
        copied = matching_layers(net_blob_shapes(net), shapes, weights_path)
    except (WeightsError, OSError) as error:
        return str(error)
    missing = [name for name in net.params if name not in copied]
    if missing:
        return f"{weights_path}: the weights of {', '.join(missing)} are missing"
    return None


def restore(solver, state_path, scratch=None):
    """Resume `solver` from `state_path` with the weights beside it (not the path the state records).
    The state naming them is written, for Caffe to read, into the folder `scratch` (default: the
    staging folder beside the snapshot; a solver process that must write nothing beside the snapshots,
    rank > 0 of tools/train.py --gpus, gives a temporary folder of its own)."""
    state_path = Path(state_path)
    state = read_solver_state(state_path)
    state.learned_net = str(state_path.with_suffix(".caffemodel"))
    folder = state_path.parent / STAGING_NAME if scratch is None else Path(scratch)
    patched = folder / f"resume_{state_path.name}"
    patched.parent.mkdir(parents=True, exist_ok=True)
    patched.write_bytes(state.SerializeToString())
    try:
        solver.restore(str(patched))
    finally:
        patched.unlink()


def resume_latest(solver, prefix, solver_type, say):
    """Resume from the newest usable snapshot of `prefix`, setting each unusable newer one aside
    (renamed *.unusable) with a line through `say`. Returns the .solverstate used, or None when
    there is none."""
    snapshots = snapshot_files(prefix)
    for iteration in sorted(snapshots, reverse=True):
        state_path, weights_path = snapshots[iteration]
        problem = snapshot_problem(state_path, weights_path, solver.net, solver_type)
        if problem is None:
            restore(solver, state_path)
            return state_path
        for path in (state_path, weights_path):
            os.replace(path, path.with_name(path.name + ".unusable"))
        earlier = [i for i in snapshots if i < iteration]
        fallback = f"falling back to the snapshot at iteration {max(earlier)}" if earlier else "no earlier snapshot"
        say(f"snapshot at iteration {iteration} is unusable: {problem}; set aside as *.unusable, {fallback}")
    return None
