"""Records NVlabs edm2's power-function EMA routines (`training/phema.py`) as tests/data/phema.npz.

  EDM2_SRC=/tmp/edm2 /tmp/tv/bin/python tests/data/make_phema_fixture.py

Run once, with the official source and torch (phema.py imports it) in their own environment;
tests/test_posthoc_ema.py checks jaxgen/posthoc_ema.py against the file without either. Keys:

  std, exp                  σ_rel → γ (std_to_exp) at 9 values from 0.01 to 0.28
  exp_in, std_out           γ → σ_rel (exp_to_std) at 6 exponents
  beta_std, beta_t_next, beta_t_delta, beta      power_function_beta at 12 (σ_rel, t) pairs
  corr_a_ofs, corr_a_std, corr_b_ofs, corr_b_std, corr   power_function_correlation, 16 pairs
  in_ofs, in_std, out_ofs, out_std, coefs       solve_posthoc_coefficients for EDM2's layout:
                            σ_rel 0.05 and 0.10 snapshotted every 8 Mi images up to 64 Mi,
                            reconstructed at 64 Mi for σ_rel 0.03, 0.075, 0.15 ([16, 3])
  coefs_mid, out_ofs_mid    the same at the 40 Mi snapshot, using the 10 snapshots up to it
  traj_std, traj, traj_ema  PowerFunctionEMA on a 1-parameter net: 300 updates of batch 64 of
                            the trajectory `traj`, the EMAs after the last update ([2])
  versions                  Python, torch and numpy versions
"""

import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.environ.get('EDM2_SRC', '/tmp/edm2'))
import torch  # noqa: E402
from training import phema  # noqa: E402  pylint: disable=import-error


def main():
  out = {}
  out['std'] = np.array([0.01, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.28])
  out['exp'] = phema.std_to_exp(out['std'])
  out['exp_in'] = np.array([0.0, 0.5, 1.0, 6.94, 16.97, 100.0])
  out['std_out'] = phema.exp_to_std(out['exp_in'])
  rng = np.random.default_rng(0)
  out['beta_std'] = np.repeat([0.05, 0.1, 0.2], 4)
  out['beta_t_next'] = np.tile([64.0, 128.0, 2048.0 * 1000, 2048.0 * 524288], 3)
  out['beta_t_delta'] = np.tile([64.0, 64.0, 2048.0, 2048.0], 3)
  out['beta'] = np.array([phema.power_function_beta(s, t, d) for s, t, d in zip(
      out['beta_std'], out['beta_t_next'], out['beta_t_delta'])])
  out['corr_a_ofs'] = rng.integers(1, 100, 16).astype(np.float64) * 1024
  out['corr_b_ofs'] = rng.integers(1, 100, 16).astype(np.float64) * 1024
  out['corr_a_std'] = rng.uniform(0.02, 0.25, 16)
  out['corr_b_std'] = rng.uniform(0.02, 0.25, 16)
  out['corr'] = phema.power_function_correlation(out['corr_a_ofs'], out['corr_a_std'],
                                                 out['corr_b_ofs'], out['corr_b_std'])
  snap = 8 << 20
  in_ofs = np.repeat(np.arange(1, 9) * snap, 2)
  in_std = np.tile([0.05, 0.10], 8)
  out.update(in_ofs=in_ofs.astype(np.float64), in_std=in_std, out_ofs=np.float64(8 * snap),
             out_std=np.array([0.03, 0.075, 0.15]))
  out['coefs'] = phema.solve_posthoc_coefficients(in_ofs, in_std, 8 * snap, out['out_std'])
  out['out_ofs_mid'] = np.float64(5 * snap)
  out['coefs_mid'] = phema.solve_posthoc_coefficients(in_ofs[:10], in_std[:10], 5 * snap,
                                                      out['out_std'])
  # PowerFunctionEMA itself: a net of one float64 parameter following a known trajectory.
  torch.manual_seed(0)
  net = torch.nn.Linear(1, 1, bias=False).double()
  traj = np.cos(np.linspace(0.0, 3.0, 300)) + 0.1 * rng.standard_normal(300)
  with torch.no_grad():
    net.weight.fill_(float(traj[0]))
  ema = phema.PowerFunctionEMA(net, stds=[0.05, 0.10])
  for k, value in enumerate(traj):
    with torch.no_grad():
      net.weight.fill_(float(value))
    ema.update(cur_nimg=(k + 1) * 64, batch_size=64)
  out['traj_std'] = np.array([0.05, 0.10])
  out['traj'] = traj
  out['traj_ema'] = np.array([e.weight.item() for e, _ in ema.get()])
  out['versions'] = np.array(f'python {platform.python_version()} torch {torch.__version__} '
                             f'numpy {np.__version__}')
  np.savez(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'phema.npz'), **out)


if __name__ == '__main__':
  main()
