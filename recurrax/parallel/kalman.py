r"""The damped (Levenberg–Marquardt) Newton step of ELK, by a parallel Kalman
smoother (Gonzalez et al., NeurIPS 2024; Särkkä and García-Fernández, 2021).

Linearise each step around the current iterate `s^k`: `F_t(s) ≈ A_t s + u_t`
with `A_t = J_t` (or its diagonal, quasi-ELK) and `u_t = F_t(s^k_{t−1}) −
A_t s^k_{t−1}`. DEER's next iterate solves `s_t = A_t s_{t−1} + u_t` exactly.
ELK's instead minimises

    Σ_t ‖s_t − A_t s_{t−1} − u_t‖² + λ Σ_t ‖s_t − s^k_t‖²,    s_0 fixed,

a trust region of weight λ ≥ 0 (`damping`) around the current iterate
(λ = 0 is DEER's step). The minimiser is the posterior mean of the linear
Gaussian model `s_t = A_t s_{t−1} + u_t + w_t`, `w_t ~ N(0, I)`, observed
as `y_t = s^k_t = s_t + v_t`, `v_t ~ N(0, I/λ)`: a Kalman filter and an RTS
smoother. Both run as associative scans (Särkkä and García-Fernández,
"Temporal parallelization of Bayesian smoothers", IEEE TAC 2021). With gain
`K = λ/(1+λ)` each step is the filtering element

    A = (1−K) A_t,   b = (1−K) u_t + K y_t,   C = (1−K) I,
    η = K A_tᵀ (y_t − u_t),   Jm = K A_tᵀ A_t

(for t = 1, `A_1 s_0` is folded into `u_1` and `A_1 := 0`), combined as

    M = (I + C_i Jm_j)⁻¹
    A_ij = A_j M A_i,   b_ij = A_j M (b_i + C_i η_j) + b_j,
    C_ij = A_j M C_i A_jᵀ + C_j,
    η_ij = (M A_i)ᵀ (η_j − Jm_j b_i) + η_i,   Jm_ij = (M A_i)ᵀ Jm_j A_i + Jm_i,

so the prefix up to t holds the filtered mean `m_t` (in b) and covariance
`P_t` (in C). The smoother is the backward linear recurrence

    x_T = m_T,   x_t = E_t x_{t+1} + g_t,
    E_t = P_t A_{t+1}ᵀ (A_{t+1} P_t A_{t+1}ᵀ + I)⁻¹,   g_t = m_t − E_t (A_{t+1} m_t + u_{t+1}),

one more associative scan (`recurrax._linear_scan`). Matrices are `[T, R, N,
N]` (ELK) or diagonals `[T, R, N]` (quasi-ELK, all products elementwise).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recurrax import _linear_scan


def gauss_jordan(a: jax.Array, b: jax.Array) -> jax.Array:
    """`a⁻¹ b` for batches of square `a` `[..., N, N]` and `b` `[..., N, M]`:
    Gauss–Jordan elimination with partial pivoting, in `jnp` operations.

    Not `jnp.linalg.solve`: on the CPU of jaxlib 0.10.0–0.10.2 two batched
    LAPACK calls running at once deadlock XLA's thread pool, and the
    associative scan runs several at once (docs/performance.md)."""
    N = a.shape[-1]
    rows = jnp.arange(N)

    def column(k, ab):
        # Pivot: the row at or below k with the largest |entry| in column k.
        mag = jnp.where(rows >= k, jnp.abs(ab[..., :, k]), -1)
        p = jnp.argmax(mag, axis=-1)
        row_k = jnp.take_along_axis(ab, jnp.broadcast_to(k, p.shape)[..., None, None], -2)
        row_p = jnp.take_along_axis(ab, p[..., None, None], -2)
        is_k = (rows == k)[:, None]
        is_p = rows[:, None] == p[..., None, None]
        ab = jnp.where(is_k, row_p, jnp.where(is_p, row_k, ab))  # swap rows k and p
        pivot_row = row_p / jax.lax.dynamic_slice_in_dim(row_p, k, 1, axis=-1)
        factors = jnp.where(is_k, 0, jax.lax.dynamic_slice_in_dim(ab, k, 1, axis=-1))
        return jnp.where(is_k, pivot_row, ab - factors * pivot_row)

    ab = jnp.concatenate([a, jnp.broadcast_to(b, (*a.shape[:-1], b.shape[-1]))], axis=-1)
    return jax.lax.fori_loop(0, N, column, ab)[..., N:]


class Dense:
    """Products, transposes and solves of `[..., N, N]` step matrices."""

    scan = staticmethod(_linear_scan.dense)

    @staticmethod
    def mm(a, b):
        return a @ b

    @staticmethod
    def mv(a, x):
        return jnp.einsum("...ij,...j->...i", a, x)

    @staticmethod
    def t(a):
        return jnp.swapaxes(a, -1, -2)

    @staticmethod
    def solve(a, b):  # a⁻¹ b, b a matrix
        return gauss_jordan(a, b)

    @staticmethod
    def eye(like):
        return jnp.broadcast_to(jnp.eye(like.shape[-1], dtype=like.dtype), like.shape)

    @staticmethod
    def sym(a):
        return 0.5 * (a + jnp.swapaxes(a, -1, -2))


class Diagonal:
    """The same operations on diagonals `[..., N]`: all elementwise."""

    scan = staticmethod(_linear_scan.diagonal)

    @staticmethod
    def mm(a, b):
        return a * b

    mv = mm

    @staticmethod
    def t(a):
        return a

    @staticmethod
    def solve(a, b):
        return b / a

    @staticmethod
    def eye(like):
        return jnp.ones_like(like)

    @staticmethod
    def sym(a):
        return a


def damped_step(A: jax.Array, u: jax.Array, y: jax.Array, s0: jax.Array,
                damping: float | jax.Array, diagonal: bool) -> jax.Array:
    """The minimiser of the module docstring's objective: `[T, R, N]` from the
    step matrices `A` (`[T, R, N, N]`, or `[T, R, N]` with `diagonal`), the
    offsets `u` and observations `y` (`[T, R, N]`), `s0` `[R, N]`."""
    op = algebra(diagonal)
    K = damping / (1 + damping)
    u = u.at[0].add(op.mv(A[0], s0))
    A = A.at[0].set(jnp.zeros_like(A[0]))
    eye = op.eye(A)
    AT = op.t(A)
    elements = ((1 - K) * A, (1 - K) * u + K * y, (1 - K) * eye,
                K * op.mv(AT, y - u), K * op.mm(AT, A))

    def combine(earlier, later):
        Ai, bi, Ci, etai, Ji = earlier
        Aj, bj, Cj, etaj, Jj = later
        lhs = op.eye(Ci) + op.mm(Ci, Jj)
        MA = op.solve(lhs, Ai)
        if diagonal:
            Mb = (bi + Ci * etaj) / lhs
            MC = Ci / lhs
        else:
            Mb = gauss_jordan(lhs, (bi + op.mv(Ci, etaj))[..., None])[..., 0]
            MC = op.solve(lhs, Ci)
        MAT = op.t(MA)
        return (op.mm(Aj, MA), op.mv(Aj, Mb) + bj, op.sym(op.mm(op.mm(Aj, MC), op.t(Aj)) + Cj),
                op.mv(MAT, etaj - op.mv(Jj, bi)) + etai, op.sym(op.mm(op.mm(MAT, Jj), Ai) + Ji))

    _, m, P, _, _ = jax.lax.associative_scan(combine, elements)
    # Smoother gains from step t+1's matrices (original A: step 1's fold above does not
    # enter, since E_t uses A_{t+1} for t ≥ 1).
    A_next, u_next = A[1:], u[1:]
    P_t, m_t = P[:-1], m[:-1]
    S = op.mm(op.mm(A_next, P_t), op.t(A_next)) + op.eye(P_t)
    E = op.t(op.solve(S, op.mm(A_next, P_t)))  # P Aᵀ S⁻¹ = (S⁻¹ A P)ᵀ, P and S symmetric
    g = m_t - op.mv(E, op.mv(A_next, m_t) + u_next)
    E = jnp.concatenate([E, jnp.zeros_like(E[:1])])
    g = jnp.concatenate([g, m[-1:]])
    return op.scan(E, g, jnp.zeros_like(s0), reverse=True)


def algebra(diagonal: bool) -> type[Dense] | type[Diagonal]:
    """The operations for diagonal (quasi) or full step matrices."""
    return Diagonal if diagonal else Dense
