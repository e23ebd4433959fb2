"""EDM2's power-function EMA and its post-hoc reconstruction (Karras et al. 2024, Sec. 3).

A power-function EMA averages the weights seen so far with weights ∝ τ^γ (τ: images shown),
so its profile scales with training time; its width is the relative standard deviation
σ_rel = sqrt((γ + 1) / ((γ + 2)² (γ + 3))) (paper Eq. 123), below √(1/12) ≈ 0.2887 (γ = 0).
It is tracked during training with β_t = (1 − Δt / t)^(γ + 1) (Eq. 127) per update of Δt
images, t counting the images after it.

Post-hoc EMA: a run keeps snapshots of two such EMAs (EDM2: σ_rel 0.05 and 0.10) every few
million images; any other profile at a snapshot's time is then a least-squares combination of
the snapshots' profiles (Algorithm 3: Gram matrix of the snapshot profiles against each
other and against the target, both from the closed-form inner product of two power
functions, Eq. 151). `reconstruct` does that to snapshot files written by the training loop
(`WORKDIR/snapshots/`, jaxgen/trained.py's export format); `python -m jaxgen.phema` is the
command. Everything here is float64 numpy, as the official `training/phema.py`, which
`tests/data/phema.npz` records (tests/test_posthoc_ema.py).
"""

import math

import numpy as np

from jaxgen.errors import UserError

# σ_rel of γ = 0 (a uniform average of everything so far): the widest power-function profile.
MAX_STD = math.sqrt(1.0 / 12.0)


def exp_to_std(exp):
  """σ_rel of the power-function profile of exponent γ (Eq. 123)."""
  exp = np.float64(exp)
  return np.sqrt((exp + 1) / ((exp + 2) ** 2 * (exp + 3)))


def std_to_exp(std):
  """The exponent γ ≥ 0 of relative standard deviation σ_rel (Eq. 126): the largest real root of
  γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) = 0, which is exp_to_std solved for γ. Arrays map
  element-wise."""
  std = np.asarray(std, np.float64)
  inv = std.reshape(-1) ** -2
  # All three roots are real for σ_rel in (0, MAX_STD); the largest is the one ≥ 0.
  return np.asarray([np.roots([1.0, 7.0, 16.0 - s, 12.0 - s]).real.max()
                     for s in inv]).reshape(std.shape)


def check_std(values, what):
  """`values` as a tuple of floats, each in (0, MAX_STD); UserError naming `what` otherwise."""
  values = tuple(float(v) for v in values)
  bad = [v for v in values if not 0 < v < MAX_STD]
  if bad:
    raise UserError(f'{what}={", ".join(f"{v:g}" for v in bad)}: a power-function EMA\'s '
                    f'relative standard deviation is in (0, {MAX_STD:.4f}) (EDM2 tracks 0.05 '
                    'and 0.10 and picks e.g. 0.075 post hoc)')
  return values


def beta(std, t_next, t_delta):
  """β of one update of t_delta images ending at t_next images (Eq. 127), float64."""
  return (1.0 - t_delta / np.float64(t_next)) ** (std_to_exp(std) + 1)


def correlation(a_ofs, a_std, b_ofs, b_std):
  """⟨p_a, p_b⟩ of two normalised power-function profiles ending at a_ofs and b_ofs (Eq. 151):
  ∫₀^min(a,b) (γa+1)/a·(τ/a)^γa · (γb+1)/b·(τ/b)^γb dτ; broadcasts."""
  a_ofs, b_ofs = np.float64(a_ofs), np.float64(b_ofs)
  a_exp, b_exp = std_to_exp(a_std), std_to_exp(b_std)
  early = a_ofs < b_ofs  # The integral ends at the earlier profile's end.
  ratio = np.where(early, (a_ofs / b_ofs) ** b_exp, (b_ofs / a_ofs) ** a_exp)
  return ((a_exp + 1) * (b_exp + 1) * ratio
          / ((a_exp + b_exp + 1) * np.maximum(a_ofs, b_ofs)))


def coefficients(in_ofs, in_std, out_ofs, out_std):
  """[n_in, n_out] weights of the snapshots (ending at in_ofs images, σ_rel in_std) whose sum
  best approximates each target profile (out_ofs, out_std) in L2 (Algorithm 3), each column
  normalised to sum 1."""
  in_ofs, in_std = (np.ravel(v).astype(np.float64) for v in np.broadcast_arrays(in_ofs, in_std))
  out_ofs, out_std = (np.ravel(v).astype(np.float64)
                      for v in np.broadcast_arrays(out_ofs, out_std))
  gram = correlation(in_ofs[:, None], in_std[:, None], in_ofs[None, :], in_std[None, :])
  target = correlation(in_ofs[:, None], in_std[:, None], out_ofs[None, :], out_std[None, :])
  weights = np.linalg.solve(gram, target)
  return weights / weights.sum(axis=0, keepdims=True)


def snapshot_name(step, std):
  """phema-<step, 8 digits>-<σ_rel, 3 decimals> (EDM2 names its by kimg; jaxgen's samples and
  checkpoints go by step)."""
  return f'phema-{step:08d}-{std:.3f}'


def reconstruct(snapshots, out_stds, out_nimg=None, averaged=None):
  """Post-hoc EMAs of each σ_rel in `out_stds` at `out_nimg` images (None: the newest snapshot's
  time), reading one snapshot at a time (as the official reconstruct_phema.py: a run keeps
  hundreds of them).

  snapshots: [(nimg, std, arrays)], the power-function EMAs a run saved; arrays a {name: array}
  or a function that reads one. Only those at 0 < nimg ≤ out_nimg are used. Floating-point
  arrays are accumulated in float32 (or their own dtype, when wider) and returned in the
  snapshots' dtype — float16 from a run — as the official reconstruct_phema.py does; others
  (e.g. counters) come from the newest snapshot used, and so do the floating-point arrays
  outside `averaged` (name prefixes, e.g. ('ema_params',): the official code copies a
  network's buffers; None = average them all). UserError when out_nimg matches no snapshot.
  Returns ([{name: array}] one per out_stds, coefficients [n_used, n_out]).
  """
  out_stds = check_std(out_stds, '--std')
  if not snapshots:
    raise UserError('no power-function EMA snapshots to reconstruct from')
  if out_nimg is None:
    out_nimg = max(s[0] for s in snapshots)
  elif not any(s[0] == out_nimg for s in snapshots):
    times = sorted({s[0] for s in snapshots})
    raise UserError(f'no snapshot at {out_nimg} images: a post-hoc EMA is reconstructed at a '
                    f'snapshot\'s time (these have {", ".join(map(str, times))})')
  used = sorted((s for s in snapshots if 0 < s[0] <= out_nimg), key=lambda s: (s[0], s[1]))
  weights = coefficients([s[0] for s in used], [s[1] for s in used], out_nimg, out_stds)
  outs, shapes, dtypes = [{} for _ in out_stds], None, {}
  for (_, _, arrays), row in zip(used, weights):
    arrays = arrays() if callable(arrays) else arrays
    got = {k: np.shape(v) for k, v in arrays.items()}
    if shapes is None:
      shapes = got
    elif got != shapes:
      raise UserError('the snapshots hold different arrays: they come from different networks')
    for out, w in zip(outs, row):
      for name, value in arrays.items():
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating) or (
            averaged is not None and not name.startswith(tuple(p + '/' for p in averaged))):
          out[name] = value
          continue
        dtypes[name] = value.dtype
        value = value.astype(np.promote_types(value.dtype, np.float32))
        if name in out:
          out[name] += value * value.dtype.type(w)
        else:
          out[name] = value * value.dtype.type(w)
  outs = [{k: v.astype(dtypes[k]) if k in dtypes else v for k, v in out.items()} for out in outs]
  return outs, weights


def read_snapshots(workdir):
  """([(nimg, std, reader)], metadata of the newest) for the power-function EMA snapshots in
  WORKDIR/snapshots/: `reader()` reads one file's arrays (checked finite) when called, so that
  only one is in memory at a time. UserError when there are none."""
  import glob  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel

  from jaxgen import trained  # pylint: disable=import-outside-toplevel
  from jaxgen.train import SNAPSHOTS  # pylint: disable=import-outside-toplevel

  if not os.path.isdir(workdir):
    raise UserError(f'--workdir={workdir} does not exist')
  snapshots, meta = [], None
  for path in sorted(glob.glob(os.path.join(workdir, SNAPSHOTS, '*.npz'))):
    info = trained.read_generator_file(path, flag='snapshot', metadata_only=True)[1]
    snap = info.get('snapshot')
    if not snap:
      continue
    reader = lambda path=path: trained.read_generator_file(path, flag='snapshot')[0]
    snapshots.append((int(snap['nimg']), float(snap['std']), reader))
    if meta is None or int(snap['nimg']) >= int(meta['snapshot']['nimg']):
      meta = info
  if not snapshots:
    raise UserError(f'{os.path.join(workdir, SNAPSHOTS)} holds no power-function EMA snapshots: '
                    'train with train.ema_std (e.g. (0.05, 0.1)) and train.ema_snapshot_kimg > 0 '
                    '(the edm2_img64 preset does)')
  return snapshots, meta


def write_reconstructions(workdir, stds, outdir, step=None, overwrite=False):
  """Reconstructs the post-hoc EMA of each σ_rel in `stds` at the snapshot of `step` (None: the
  newest) from WORKDIR/snapshots/ and writes each to OUTDIR/phema-<step>-<std>.npz in the export
  format (`generate --network`, `evaluate --network`). Everything is checked before anything is
  written; existing files are kept unless `overwrite`. Returns [(path, coefficients)]."""
  import os  # pylint: disable=import-outside-toplevel
  import types  # pylint: disable=import-outside-toplevel

  import ml_collections  # pylint: disable=import-outside-toplevel
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  from jaxgen import trained  # pylint: disable=import-outside-toplevel
  from jaxgen import train  # pylint: disable=import-outside-toplevel

  stds = check_std(stds, '--std')
  snapshots, meta = read_snapshots(workdir)
  config = ml_collections.ConfigDict(meta['config'])
  batch = config.train.batch_size
  steps = sorted({s[0] // batch for s in snapshots})
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise UserError(f'--step={step}: no snapshot at that step in {workdir}; they are at steps '
                    f'{", ".join(map(str, steps))}')
  paths = [os.path.join(outdir, snapshot_name(step, std) + '.npz') for std in stds]
  if os.path.exists(outdir) and not os.path.isdir(outdir):
    raise UserError(f'--outdir={outdir} is a file, not a folder')
  existing = [p for p in paths if os.path.exists(p)]
  if existing and not overwrite:
    raise UserError(f'{existing[0]} already exists: choose another --outdir, or pass '
                    '--overwrite to replace it')
  recipe = train.create_recipe(config, types.SimpleNamespace(num_classes=meta['num_classes']))
  nimg = step * batch
  averaged = meta['snapshot'].get('averaged')  # Snapshots before it was recorded: all.
  outs, weights = reconstruct(snapshots, stds, nimg, averaged)
  os.makedirs(outdir, exist_ok=True)
  written = []
  for j, (std, path, arrays) in enumerate(zip(stds, paths, outs)):
    fields = {}
    for field in recipe.generator_fields:
      flat = {tuple(k[len(field) + 1:].split('/')): v for k, v in arrays.items()
              if k.startswith(field + '/')}
      fields[field] = traverse_util.unflatten_dict(flat)
    trained.write_generator(path, config, recipe, step, fields,
                            {'phema': {'nimg': nimg, 'std': std,
                                       'coefficients': [float(w) for w in weights[:, j]]}})
    written.append((path, weights[:, j]))
  return written
