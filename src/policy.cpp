#include "policy_p.h"

#include <algorithm>
#include <cmath>

namespace stage {

Backoff Backoff::none() noexcept
{
    Backoff b;
    b.m_none = true;
    return b;
}

Backoff Backoff::exponential(std::chrono::milliseconds initial, std::chrono::milliseconds maximum,
                             double multiplier, double jitter, std::chrono::milliseconds resetAfter) noexcept
{
    Backoff b;
    b.m_initial = std::max(initial, std::chrono::milliseconds(0));
    b.m_maximum = std::max(maximum, b.m_initial);
    b.m_multiplier = std::max(multiplier, 1.0);
    b.m_jitter = std::clamp(jitter, 0.0, 1.0);
    b.m_resetAfter = std::max(resetAfter, std::chrono::milliseconds(0));
    return b;
}

std::chrono::milliseconds Backoff::delay(int streak, double random) const noexcept
{
    if (m_none || streak <= 1)
        return std::chrono::milliseconds(0);
    const double exponent = std::min(streak - 2, 62);
    const double raw = double(m_initial.count()) * std::pow(m_multiplier, exponent);
    const double capped = std::min(raw, double(m_maximum.count()));
    const double jittered = capped * (1.0 - m_jitter * std::clamp(random, 0.0, 1.0));
    return std::chrono::milliseconds(qint64(std::llround(jittered)));
}

// RestartIntensity

bool detail::RestartIntensity::allow(detail::Clock::time_point now, int maxRestarts, std::chrono::milliseconds period)
{
    if (maxRestarts < 0)
        return true;
    m_restarts.push_back(now);
    while (!m_restarts.empty() && now - m_restarts.front() > period)
        m_restarts.pop_front();
    if (int(m_restarts.size()) > maxRestarts) {
        m_restarts.clear();
        return false;
    }
    return true;
}

int detail::RestartIntensity::recent(detail::Clock::time_point now, std::chrono::milliseconds period) const
{
    return int(std::count_if(m_restarts.begin(), m_restarts.end(), [&](auto t) { return now - t <= period; }));
}

} // namespace stage
