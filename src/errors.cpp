#include <stage/errors.h>
#include <stage/future.h>
#include <stage/signal.h>
#include <stage/waitfor.h>

Q_LOGGING_CATEGORY(lcStageWorker, "stage.worker", QtInfoMsg)

namespace stage {

const QLoggingCategory &lcWorker()
{
    return lcStageWorker();
}

const char *Cancelled::what() const noexcept
{
    return "stage::Cancelled: the worker was asked to stop";
}

Error::Error(const std::string &what) : std::runtime_error(what) {}

namespace {
std::string deadLetteredPrefix(int failures)
{
    return "dead-lettered after " + std::to_string(failures) + (failures == 1 ? " failed delivery: " : " failed deliveries: ");
}
} // namespace

DeadLettered::DeadLettered(int failures, const std::string &reason)
    : BrokenReply(deadLetteredPrefix(failures) + reason), m_failures(failures),
      m_reasonOffset(int(deadLetteredPrefix(failures).size()))
{
}

namespace detail {

std::exception_ptr senderDestroyedError()
{
    return std::make_exception_ptr(
        ObjectDestroyed("stage::signal: the sender was destroyed before it emitted the awaited signal"));
}

void throwNullSender()
{
    throw ObjectDestroyed("stage::signal: the sender is null");
}

void throwFutureCanceled()
{
    throw Error("stage::future: the QFuture was canceled without a result");
}

void throwWaitForTimeout(std::chrono::milliseconds timeout)
{
    throw TimeoutError("stage::waitFor: the awaited operation did not finish within "
                       + std::to_string(timeout.count()) + " ms");
}

} // namespace detail
} // namespace stage
