"""Inception Score (Salimans et al. 2016).

IS = exp(E_x KL(p(y|x) || p(y))), with p(y|x) the softmax of the FID Inception's 1008
logits *without* the fc bias (as the StyleGAN2-ADA metrics compute it, following the
original TensorFlow code which took the logits before the bias add) and p(y) the mean of
p(y|x) over a split. The images are cut into `num_splits` (10) consecutive splits; the
score's mean and standard deviation over the splits are reported. Higher is better.
"""

import numpy as np
from scipy import special

from jaxgen.errors import UserError


def inception_score(logits, num_splits=10):
  """Inception Score from logits.

  Args:
    logits: [n, 1008] logits without bias (`InceptionFeatures` returns them).
    num_splits: number of consecutive splits; split i is rows [i n / s, (i + 1) n / s).

  Returns:
    (mean, std) over splits, floats.
  """
  logits = np.asarray(logits, np.float64)
  n = logits.shape[0]
  if logits.ndim != 2 or n < num_splits:
    raise UserError(f'the Inception Score needs logits [n, classes] with n >= {num_splits} '
                    f'splits, got shape {logits.shape}')
  log_p = special.log_softmax(logits, axis=1)
  scores = []
  for i in range(num_splits):
    part = log_p[i * n // num_splits:(i + 1) * n // num_splits]
    # log of the split's marginal p(y) = mean_x p(y|x), computed stably in log space.
    log_py = special.logsumexp(part, axis=0) - np.log(part.shape[0])
    kl = np.sum(np.exp(part) * (part - log_py), axis=1)
    scores.append(np.exp(np.mean(kl)))
  return float(np.mean(scores)), float(np.std(scores))
