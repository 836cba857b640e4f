#pragma once

// A double-ended FIFO on one contiguous, lazily allocated, power-of-two ring: no allocation
// until the first push, none per element afterwards, O(1) swap. Not thread-safe.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <utility>

namespace stage::detail {

template<typename T>
class RingQueue
{
public:
    RingQueue() noexcept = default;
    RingQueue(const RingQueue &) = delete;
    RingQueue &operator=(const RingQueue &) = delete;
    ~RingQueue()
    {
        clear();
        ::operator delete(static_cast<void *>(m_slots), std::align_val_t(alignof(T)));
    }

    bool empty() const noexcept { return m_size == 0; }
    std::size_t size() const noexcept { return m_size; }

    T &front() noexcept { return m_slots[m_head]; }

    void push_back(T &&value)
    {
        if (m_size == m_mask + 1 || !m_slots)
            grow();
        ::new (static_cast<void *>(m_slots + ((m_head + m_size) & m_mask))) T(std::move(value));
        ++m_size;
    }

    void push_front(T &&value)
    {
        if (m_size == m_mask + 1 || !m_slots)
            grow();
        const std::uint32_t slot = (m_head - 1) & m_mask;
        ::new (static_cast<void *>(m_slots + slot)) T(std::move(value));
        m_head = slot;
        ++m_size;
    }

    void pop_front() noexcept
    {
        m_slots[m_head].~T();
        m_head = (m_head + 1) & m_mask;
        --m_size;
    }

    void clear() noexcept
    {
        while (m_size)
            pop_front();
        m_head = 0;
    }

    void swap(RingQueue &other) noexcept
    {
        std::swap(m_slots, other.m_slots);
        std::swap(m_mask, other.m_mask);
        std::swap(m_head, other.m_head);
        std::swap(m_size, other.m_size);
    }

    template<typename F>
    void forEach(F &&f)
    {
        for (std::uint32_t i = 0; i < m_size; ++i)
            f(m_slots[(m_head + i) & m_mask]);
    }

private:
    void grow()
    {
        const std::size_t capacity = m_slots ? (std::size_t(m_mask) + 1) * 2 : 8;
        if (capacity > (std::size_t(1) << 31))
            throw std::length_error("stage::detail::RingQueue: more than 2^31 elements");
        T *storage = static_cast<T *>(::operator new(capacity * sizeof(T), std::align_val_t(alignof(T))));
        for (std::uint32_t i = 0; i < m_size; ++i) {
            T &from = m_slots[(m_head + i) & m_mask];
            ::new (static_cast<void *>(storage + i)) T(std::move(from));
            from.~T();
        }
        ::operator delete(static_cast<void *>(m_slots), std::align_val_t(alignof(T)));
        m_slots = storage;
        m_mask = std::uint32_t(capacity - 1);
        m_head = 0;
    }

    // 32-bit indices: 24 bytes a queue (a mailbox has two).
    T *m_slots = nullptr;
    std::uint32_t m_mask = 0;
    std::uint32_t m_head = 0;
    std::uint32_t m_size = 0;
};

} // namespace stage::detail
