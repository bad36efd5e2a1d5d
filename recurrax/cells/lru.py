r"""The linear recurrent unit (LRU) of Orvieto et al., "Resurrecting Recurrent
Neural Networks for Long Sequences" (ICML 2023): a diagonal complex linear
recurrence, stable by construction, read out by a real linear map."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from recurrax import _checks, _linear_scan
from recurrax import initializers as inits
from recurrax.cells import _common as C
from recurrax.protocols import Cell


def _lambda(params: dict) -> tuple[jax.Array, jax.Array]:
    """`λ = exp(−exp(ν_log) + i exp(θ_log))` as `(Re λ, Im λ)`."""
    modulus = jnp.exp(-jnp.exp(params["nu_log"]))
    theta = jnp.exp(params["theta_log"])
    return modulus * jnp.cos(theta), modulus * jnp.sin(theta)


def lru(
    hidden_size: int,
    *,
    state_size: int | None = None,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
    initializers: inits.Initializers = inits.Initializers(),
) -> Cell:
    r"""The LRU (Orvieto et al. 2023), `N = state_size` complex states:

        λ   = exp(−exp(ν_log) + i exp(θ_log))       (|λ| < 1 for every ν_log)
        γ   = exp(γ_log)
        x'  = λ ⊙ x + γ ⊙ (u B)
        y   = Re(x' C) + D ⊙ u

    `B: (H, N)` and `C: (N, H)` complex, `D: (H,)` real. `D ⊙ u` adds the
    input itself to the `H`-wide output, so the input size must equal `H`.

    Initialisation, as the paper's: `u1, u2 ~ U[0, 1)`,
    `ν_log = log(−½ log(u1 (r_max² − r_min²) + r_min²))` (|λ| uniform on the
    ring `r_min ≤ |λ| ≤ r_max`), `θ_log = log(max_phase · u2)`,
    `γ_log = log √(1 − |λ|²)` (the normalisation, then learned),
    `B = (N(0,1) + i N(0,1)) / √(2H)`, `C = (N(0,1) + i N(0,1)) / √N`,
    `D ~ N(0, 1)`. Only `initializers.dtype` applies (the draws are the
    paper's). `|λ|² = u1 (r_max² − r_min²) + r_min²` is clipped to
    `[tiny, 1 − eps]` of the drawing dtype, so every `ν_log`, `θ_log` and
    `γ_log` is finite.

    Params (all real): `B_re, B_im: (H, N)`, `C_re, C_im: (N, H)`,
    `nu_log, theta_log, gamma_log: (N,)`, `D: (H,)`. Carry: `(x_re, x_im)`,
    each `(*batch, N)`. `prepare` gives
    `[γ ⊙ Re(u B) | γ ⊙ Im(u B) | D ⊙ u]` (one matmul, `2N + H` features);
    `step` is the complex product written in real arithmetic and the readout
    `x_re C_re − x_im C_im` of the new state. `linear` is one associative
    scan in complex arithmetic (`recurrax._linear_scan.diagonal`).
    """
    H = C.check_hidden_size("lru", hidden_size)
    N = H if state_size is None else _checks.check_size("lru: state_size", state_size)
    r_min, r_max = _checks.check_real("lru: r_min", r_min), _checks.check_real("lru: r_max", r_max)
    max_phase = _checks.check_real("lru: max_phase", max_phase, minimum=0.0, strict=True)
    if not 0.0 <= r_min <= r_max <= 1.0 or r_min == 1.0:
        raise ValueError(
            f"lru: needs 0 <= r_min <= r_max <= 1 and r_min < 1 (|λ| = 1 is outside the "
            f"exponential parametrisation), got r_min={r_min}, r_max={r_max}"
        )
    if not isinstance(initializers, inits.Initializers):
        raise TypeError(
            f"lru: initializers must be a recurrax.initializers.Initializers (the LRU uses "
            f"its dtype only), got {type(initializers).__name__}"
        )
    dtype = initializers.dtype

    def init(key: jax.Array, input_size: int) -> dict[str, jax.Array]:
        input_size = C.check_input_size("lru", input_size)
        C.check_input_equals_hidden("lru", input_size, H)
        draw = jnp.promote_types(dtype, jnp.float32)
        k_u1, k_u2, k_b_re, k_b_im, k_c_re, k_c_im, k_d = jax.random.split(key, 7)
        finfo = jnp.finfo(draw)
        u1 = jax.random.uniform(k_u1, (N,), draw)
        u2 = jax.random.uniform(k_u2, (N,), draw)
        radius2 = jnp.clip(u1 * (r_max**2 - r_min**2) + r_min**2, finfo.tiny, 1.0 - finfo.eps)
        nu = -0.5 * jnp.log(radius2)  # |λ| = exp(−ν)
        theta = jnp.maximum(max_phase * u2, finfo.tiny)
        params = {
            "B_re": jax.random.normal(k_b_re, (H, N), draw) / math.sqrt(2 * H),
            "B_im": jax.random.normal(k_b_im, (H, N), draw) / math.sqrt(2 * H),
            "C_re": jax.random.normal(k_c_re, (N, H), draw) / math.sqrt(N),
            "C_im": jax.random.normal(k_c_im, (N, H), draw) / math.sqrt(N),
            "nu_log": jnp.log(nu),
            "theta_log": jnp.log(theta),
            "gamma_log": 0.5 * jnp.log(-jnp.expm1(-2.0 * nu)),  # 1 − |λ|², without cancelling
            "D": jax.random.normal(k_d, (H,), draw),
        }
        return {k: v.astype(dtype) for k, v in params.items()}

    def initial_carry(batch_shape: tuple = (), dtype=jnp.float32):
        zeros = jnp.zeros((*tuple(batch_shape), N), dtype)
        return (zeros, zeros)

    def prepare(params: dict, us: jax.Array) -> jax.Array:
        C.check_input_features("lru", us, H)
        gamma = jnp.exp(params["gamma_log"])
        bu = C.project(params, us, ["B_re", "B_im"]) * jnp.concatenate([gamma, gamma])
        return jnp.concatenate([bu, params["D"] * us], axis=-1)

    def step(params: dict, carry, px: jax.Array):
        x_re, x_im = carry
        bu_re, bu_im, du = px[..., :N], px[..., N:2 * N], px[..., 2 * N:]
        l_re, l_im = _lambda(params)
        x_re, x_im = l_re * x_re - l_im * x_im + bu_re, l_re * x_im + l_im * x_re + bu_im
        y = (C.recurrent_matmul(params, x_re, ["C_re"])
             - C.recurrent_matmul(params, x_im, ["C_im"]) + du)
        return (x_re, x_im), y

    def linear(params: dict, pxs: jax.Array, carry, valid: jax.Array | None):
        x_re, x_im = carry
        real = jnp.result_type(pxs, x_re, x_im, params["nu_log"])
        complex_ = jnp.result_type(real, jnp.complex64)

        def join(re, im):
            return re.astype(complex_) + 1j * im.astype(complex_)

        a = jnp.broadcast_to(join(*_lambda(params)), pxs[..., :N].shape)
        b = join(pxs[..., :N], pxs[..., N:2 * N])
        if valid is not None:  # an invalid step: a = 1, b = 0
            keep = valid[..., None]
            a = jnp.where(keep, a, jnp.ones((), complex_))
            b = jnp.where(keep, b, jnp.zeros((), complex_))
        xs = _linear_scan.diagonal(a, b, join(x_re, x_im))
        return xs.real.astype(real), xs.imag.astype(real)

    return Cell(init, initial_carry, prepare, step, H, linear)
