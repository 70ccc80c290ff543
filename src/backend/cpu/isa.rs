//! The CPU's vector extensions, detected once per process for every
//! kernel that is compiled per instruction set (the select kernels here,
//! the distance kernels of the batch strategies).

use std::sync::OnceLock;

/// The widest instruction set the kernels are compiled for that this CPU
/// runs; ordered narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    /// No vector extension the kernels use.
    Scalar,
    /// AVX2 with FMA and POPCNT: eight f32 lanes, gathers.
    Avx2,
    /// AVX-512F and DQ (with AVX2, FMA and POPCNT): sixteen lanes,
    /// permutes, and 64-bit integer multiplies for the random strategy's
    /// hash.
    Avx512,
}

impl Isa {
    /// This CPU's, detected on first use, capped by `ALPOOL_ISA`
    /// (`scalar`, `avx2` or `avx512`) where that is set: so one machine
    /// can measure the copies a CPU with fewer extensions runs. A name it
    /// does not know, or one above what the CPU has, caps nothing.
    pub fn detect() -> Isa {
        static USED: OnceLock<Isa> = OnceLock::new();
        *USED.get_or_init(|| {
            let cap = std::env::var("ALPOOL_ISA").ok();
            capped(Isa::found(), cap.as_deref())
        })
    }

    /// What this CPU has, whatever `ALPOOL_ISA` says.
    pub fn found() -> Isa {
        static FOUND: OnceLock<Isa> = OnceLock::new();
        *FOUND.get_or_init(probe)
    }

    /// Runs `f` compiled for this instruction set, so that its loops
    /// (inlined into it, as closures are) become vector code of this width.
    #[inline(always)]
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
            fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            #[target_feature(enable = "avx2,fma")]
            fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            match self {
                // SAFETY: `detect` returned this variant only after
                // checking that the CPU has exactly these features.
                Isa::Avx512 => return unsafe { avx512(f) },
                // SAFETY: as above.
                Isa::Avx2 => return unsafe { avx2(f) },
                Isa::Scalar => {}
            }
        }
        f()
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

/// `found`, or the narrower set `cap` names.
fn capped(found: Isa, cap: Option<&str>) -> Isa {
    let cap = match cap.map(str::to_ascii_lowercase).as_deref() {
        Some("scalar") => Isa::Scalar,
        Some("avx2") => Isa::Avx2,
        _ => return found,
    };
    cap.min(found)
}

#[cfg(target_arch = "x86_64")]
fn probe() -> Isa {
    use std::arch::is_x86_feature_detected as has;
    // Every AVX2 CPU has POPCNT; the multi-label lanes count with it.
    let avx2 = has!("avx2") && has!("fma") && has!("popcnt");
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

/// Defines `fn NAME(isa: Isa, ARGS) -> RET` that runs BODY compiled for
/// `isa`'s vector extensions: one copy per instruction set, each with the
/// body inlined, so its loops become vector code of that width and its
/// `mul_add`s fused instructions. Use it where [`Isa::run`]'s closure may
/// stay a call of its own (its loops then compiled for the baseline).
macro_rules! per_isa {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$m])*
        $vis fn $name(isa: $crate::backend::cpu::Isa, $($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
                fn avx512($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                match isa {
                    // SAFETY: `Isa::detect` found exactly these features.
                    $crate::backend::cpu::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::backend::cpu::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::backend::cpu::Isa::Scalar => {}
                }
            }
            let _ = isa;
            body($($arg),*)
        }
    };
}
pub(crate) use per_isa;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_narrows_and_never_widens() {
        assert_eq!(capped(Isa::Avx512, Some("avx2")), Isa::Avx2);
        assert_eq!(capped(Isa::Avx512, Some("SCALAR")), Isa::Scalar);
        assert_eq!(capped(Isa::Avx2, Some("avx512")), Isa::Avx2);
        assert_eq!(capped(Isa::Scalar, Some("avx2")), Isa::Scalar);
        assert_eq!(capped(Isa::Avx2, Some("sse9")), Isa::Avx2);
        assert_eq!(capped(Isa::Avx512, None), Isa::Avx512);
    }
}
