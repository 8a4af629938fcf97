#include "thread_pool.h"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace fn {
namespace {

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  // Runs job(worker) for worker in [1, n) on the pool and job(0) on the caller; false if busy.
  bool run(int n, const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> busy(dispatch_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    grow(n - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      active_ = n - 1;
      pending_ = n - 1;
      ++generation_;
    }
    wake_.notify_all();
    job(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    return true;
  }

 private:
  void grow(int wanted) {
    while (static_cast<int>(workers_.size()) < wanted) {
      int index = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, index] { loop(index); });
    }
  }

  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && index <= active_); });
        if (stopping_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(index);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex dispatch_;  // held by the one caller the pool serves at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int active_ = 0, pending_ = 0;
  bool stopping_ = false;
};

Pool& pool() {
  // Never destroyed: workers may outlive static destructors. A forked child has none of its
  // parent's threads, so it starts a pool of its own (the parent's is leaked in the child).
  static Pool* instance = nullptr;
  static pid_t owner = 0;
  static std::mutex guard;
  std::lock_guard<std::mutex> lock(guard);
  if (instance == nullptr || owner != getpid()) {
    instance = new Pool();
    owner = getpid();
  }
  return *instance;
}

}  // namespace

int parallel_for(int64_t count, int threads, int64_t work, const std::function<void(int64_t, int64_t, int)>& body) {
  if (count <= 0) return 1;
  const int64_t worth = std::max<int64_t>(1, work / kMinWorkPerThread);
  int n = static_cast<int>(std::min<int64_t>({std::max(threads, 1), count, worth}));
  if (n == 1) {
    body(0, count, 0);
    return 1;
  }
  auto job = [&](int worker) {
    int64_t begin = count * worker / n, end = count * (worker + 1) / n;
    if (begin < end) body(begin, end, worker);
  };
  if (!pool().run(n, job)) {
    body(0, count, 0);
    return 1;
  }
  return n;
}

}  // namespace fn
