// Runtime ISA dispatch for the hot CPU loops of a portable (baseline x86-64) build.
//
// A function marked INVFAST_CLONES is compiled once per listed target from the same
// source, and the loader picks the best one the CPU supports (GCC target_clones: an ifunc
// resolved at load time). `flatten` inlines every callee into each clone, so the
// per-element maths of csrc/common/ is vectorized at the clone's width.
//
//   INVFAST_CLONES       AVX2 and baseline. AVX2 does not imply FMA, so no clone contracts a
//                        multiply-add: every clone computes the bits of the baseline.
//   INVFAST_CLONES_WIDE  AVX-512F, AVX2 and baseline, for loops written for 16 float lanes.
//                        AVX-512F does include FMA: GCC may contract a·b + c in that clone,
//                        so such code must not depend on the rounding of a multiply-add
//                        (csrc/cpu/stats.cpp has one, in a bin estimate that is then checked).
#pragma once

#if defined(INVFAST_NO_CLONES)
// Only the baseline code, as a CPU without AVX2 runs it (tests/test_backends.py builds the
// kernels this way to test what the "default" clones compute).
#define INVFAST_CLONES __attribute__((flatten))
#define INVFAST_CLONES_WIDE __attribute__((flatten))
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define INVFAST_CLONES __attribute__((target_clones("avx2", "default"), flatten))
#define INVFAST_CLONES_WIDE __attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#else
#define INVFAST_CLONES
#define INVFAST_CLONES_WIDE
#endif

namespace invfast::cpu {

// True where the loader picks the "avx512f" clones: for choices of method (not of results)
// that only pay off there.
inline bool cpu_has_avx512f() {
#if defined(INVFAST_NO_CLONES)
  return false;
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

}  // namespace invfast::cpu
