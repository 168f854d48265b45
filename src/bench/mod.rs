//! The benchmark drivers, at the top of the house (they use every layer):
//! `bench allocate` (the solvers on random instances) and `bench score` (the
//! machine's GEMM rate, the naive forward pass and the fused operator). They
//! print their figures, each also as a JSON line; they never assert a time.

pub mod allocate;
pub mod layout;
pub mod score;
