"""Low-level image ops shared by the models, one module each (NVlabs' names):

  jaxgen.ops.upfirdn2d        setup_filter, upfirdn2d, filter2d, upsample2d, downsample2d
  jaxgen.ops.bias_act         bias_act (bias + activation + gain + clamp)
  jaxgen.ops.conv2d_resample  conv2d_resample (convolution with FIR up/down-sampling)

Plain jnp/lax functions on NHWC arrays. No custom kernels: XLA fuses the elementwise work, and
the convolutions go to cuDNN. The functions are not re-exported here because they share their
modules' names; import them from the modules.
"""
