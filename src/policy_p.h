#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include "executor_p.h"

#include <stage/policy.h>

#include <chrono>
#include <deque>

namespace stage::detail {

/* Erlang's restart intensity: more than maxRestarts restarts within period is too many. */
class RestartIntensity
{
public:
    /* Records a restart at \a now; false if that makes too many. maxRestarts < 0: unlimited. */
    bool allow(Clock::time_point now, int maxRestarts, std::chrono::milliseconds period);
    void clear() { m_restarts.clear(); }
    /* Restarts recorded within \a period before \a now (none are recorded while unlimited). */
    int recent(Clock::time_point now, std::chrono::milliseconds period) const;

private:
    std::deque<Clock::time_point> m_restarts; // at most maxRestarts + 1 entries
};

} // namespace stage::detail
