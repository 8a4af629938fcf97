// A small fork-join pool: parallel_for splits [0, count) into contiguous ranges, one per thread.
//
// Not OpenMP: torch ships its own OpenMP runtime and a second one in the same process spins
// its idle threads against it on machines with few cores. These workers block when idle.
#pragma once

#include <cstdint>
#include <functional>

namespace fn {

// body(begin, end, worker) over contiguous ranges of [0, count); worker in [0, threads) indexes
// per-thread scratch. The caller runs range 0. `work` is the whole call's size in floats touched:
// a thread more is used only for kMinWorkPerThread of it, since waking one costs tens of
// microseconds on a small VM, more than small calls take. A call made while the pool is busy
// (from another thread) runs on its caller alone, so concurrent callers never wait for each other.
// Returns the number of threads used.
constexpr int64_t kMinWorkPerThread = int64_t(1) << 18;
int parallel_for(int64_t count, int threads, int64_t work, const std::function<void(int64_t, int64_t, int)>& body);

}  // namespace fn
