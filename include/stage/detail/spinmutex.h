#pragma once

// A mutex for critical sections of a few dozen instructions: it spins briefly before sleeping
// on a futex (std::atomic::wait), where std::mutex goes to the kernel at the first contention.
// Drepper's three-state mutex: 0 free, 1 locked, 2 locked with sleepers.

#include <atomic>

#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#endif

namespace stage::detail {

inline void cpuRelax() noexcept
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
}

class SpinMutex
{
public:
    void lock() noexcept
    {
        int expected = 0;
        if (m_state.compare_exchange_strong(expected, 1, std::memory_order_acquire))
            return;
        for (int i = 0; i < 128; ++i) {
            cpuRelax();
            expected = 0;
            if (m_state.load(std::memory_order_relaxed) == 0
                && m_state.compare_exchange_weak(expected, 1, std::memory_order_acquire))
                return;
        }
        while (m_state.exchange(2, std::memory_order_acquire) != 0)
            m_state.wait(2, std::memory_order_relaxed);
    }
    bool try_lock() noexcept
    {
        int expected = 0;
        return m_state.compare_exchange_strong(expected, 1, std::memory_order_acquire);
    }
    void unlock() noexcept
    {
        if (m_state.exchange(0, std::memory_order_release) == 2)
            m_state.notify_one();
    }

private:
    std::atomic<int> m_state{0};
};

} // namespace stage::detail
