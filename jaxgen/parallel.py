"""Device layout, decided here and only here.

One mesh axis, 'data': the batch is split over it and the train state (parameters, optimizer
state, EMA) is replicated. To shard parameters later (FSDP), change `state_sharding` alone:
the training loop passes its result to `jax.jit` as in/out shardings and never builds a
sharding itself.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgen.errors import UserError

DATA_AXIS = 'data'


CPU_DEVICE_FLAG = '--xla_force_host_platform_device_count'


def use_cpu_devices(count):
  """Splits a CPU host into `count` XLA devices (`jax_num_cpu_devices`), before JAX starts.

  XLA runs one small program on one CPU device on about one core; as `count` devices the batch
  is split over the mesh and each part runs on its own thread pool, e.g. 1.6× the images/s of
  the SongUNet of configs/diffusion.py:songunet_cpu on two cores. Only the CPU platform is
  affected (a GPU or TPU run's devices are its accelerators), and nothing is changed when
  `count` is 0 or when XLA_FLAGS already sets the device count (launch/local.sh, multi-device
  tests). A negative count is refused earlier, by `validation.check_config`. Returns whether it
  changed anything.
  """
  import os  # pylint: disable=import-outside-toplevel
  if not count or CPU_DEVICE_FLAG in os.environ.get('XLA_FLAGS', ''):
    return False
  try:
    jax.config.update('jax_num_cpu_devices', int(count))
  except RuntimeError:  # JAX has already started in this process (a library caller).
    import logging  # pylint: disable=import-outside-toplevel
    logging.warning('train.cpu_devices=%d ignored: JAX was already running with %d devices',
                    count, jax.device_count())
    return False
  return True


def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None):
  """Joins a multi-process job (`jax.distributed.initialize`).

  With explicit arguments, uses them (e.g. two processes on one host, or a cluster JAX does
  not detect). Without, lets JAX auto-detect the cluster (Cloud TPU, SLURM, Open MPI, ...) and
  stays single-process where there is none.
  """
  if coordinator_address or num_processes or process_id is not None:
    if not (coordinator_address and num_processes and process_id is not None):
      raise UserError('multi-process needs all of --coordinator_address, --num_processes and '
                      '--process_id (or none of them, for auto-detection)')
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return
  try:
    jax.distributed.initialize()
  except (ValueError, RuntimeError):
    pass  # No cluster detected: a single-process run.


def create_mesh():
  """A 1-D mesh over every device of every process."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh):
  """Leading (batch) dimension split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def batch_constraint(mesh):
  """A function that asks XLA to split an array's leading (batch) dimension over the data axis.

  For arrays created inside a jitted step (latents, noise) that no input's sharding reaches;
  the identity without a mesh, or when the batch does not divide evenly.
  """
  if mesh is None or mesh.devices.size == 1:
    return lambda x: x
  sharding = batch_sharding(mesh)
  return lambda x: (jax.lax.with_sharding_constraint(x, sharding)
                    if x.shape[0] % mesh.devices.size == 0 else x)


def replicated(mesh):
  return NamedSharding(mesh, P())


def state_sharding(mesh, state):
  """Sharding of every leaf of the train state: replicated (data parallelism)."""
  return jax.tree.map(lambda _: replicated(mesh), state)


def with_shardings(abstract, shardings):
  """`abstract` (ShapeDtypeStructs, e.g. from jax.eval_shape) with `shardings` attached: what
  a checkpoint is restored into."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


def device_batch(size, mesh):
  """`size` rounded up to a multiple of the mesh's devices: the whole batches, each device an
  equal share, in which evaluation and sampling run one compiled program for every call (the
  last batch padded)."""
  n = mesh.devices.size
  return -(-size // n) * n


def check_batch_size(global_batch_size, mesh):
  n = mesh.devices.size
  if global_batch_size % n:
    raise UserError(f'train.batch_size={global_batch_size} is not divisible by the {n} devices: '
                    f'use a multiple of {n}')


def global_batch(local_batch, mesh):
  """Assembles each process's rows into global arrays sharded over the data axis."""
  sharding = batch_sharding(mesh)

  def to_global(x):
    shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)

  return jax.tree.map(to_global, local_batch)
