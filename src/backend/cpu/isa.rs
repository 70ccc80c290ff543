//! The CPU's vector extensions, detected once per process for every
//! kernel that is compiled per instruction set (the select kernels here,
//! the distance kernels of the batch strategies).

use std::sync::OnceLock;

/// The widest instruction set the kernels are compiled for that this CPU
/// runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// No vector extension the kernels use.
    Scalar,
    /// AVX2 with FMA: eight f32 lanes, gathers.
    Avx2,
    /// AVX-512F and DQ (with AVX2 and FMA): sixteen lanes, permutes, and
    /// 64-bit integer multiplies for the random strategy's hash.
    Avx512,
}

impl Isa {
    /// This CPU's, detected on first use.
    pub fn detect() -> Isa {
        static FOUND: OnceLock<Isa> = OnceLock::new();
        *FOUND.get_or_init(probe)
    }

    /// As `alpool bench` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "AVX2",
            Isa::Avx512 => "AVX-512",
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn probe() -> Isa {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma");
    if avx2 && has!("avx512f") && has!("avx512dq") {
        Isa::Avx512
    } else if avx2 {
        Isa::Avx2
    } else {
        Isa::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn probe() -> Isa {
    Isa::Scalar
}
