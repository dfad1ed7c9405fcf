// allocator.h: glibc malloc settings for processes that run ebmkit's loops.
//
// Why: a sampler or trainer frees and reallocates the same activation buffers
// every step. Under glibc's defaults (a dynamic mmap threshold starting at
// 128 KiB, trimming the heap top past 128 KiB) those buffers go back to the
// kernel and fault in again, and the cost depends on where the heap happens
// to sit: measured on 2 cores, the same PCD training step (batch 64, 20 SGLD
// steps) ran either at 0.82 s or at 2.0-2.5 s per step, process by process
// (3 of 5 plain runs slow, system time 25-30%), and at 0.69-0.82 s in 8 of 8
// runs with the settings below. Trimming alone, without a fixed mmap
// threshold, made it 7 s. A batch-64 Langevin step ran 15% faster with the
// settings (3 of 3 interleaved pairs); a batch-1 step, whose buffers are all
// small, ran about 6% slower (20.0 vs 21.4 ms per 10 steps).
//
// The settings keep freed memory in the process: the mmap threshold at glibc's
// largest (32 MiB on 64-bit), so buffers below it are reused from the heap,
// and the trim threshold at 1 GiB. The cost is a resident set that stays near
// its peak. The `ebm` CLI (and so the server) and the benchmarks call this at
// start; a program that links the library decides for itself.
#pragma once

namespace ebm {

/// Applies the settings above (mallopt M_MMAP_THRESHOLD = 32 MiB,
/// M_TRIM_THRESHOLD = 1 GiB). Returns true when both were accepted; false when
/// $EBM_MALLOC_TUNING is "0" (left as glibc's defaults, e.g. to compare), in a
/// sanitizer build (the sanitizer's allocator ignores mallopt), or when glibc
/// refused a value.
bool tune_allocator();

}  // namespace ebm
