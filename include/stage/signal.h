#pragma once

#include <stage/detail/waiter.h>

#include <QtCore/QObject>

#include <string_view>
#include <tuple>
#include <type_traits>

namespace stage {
namespace detail {

// Q_OBJECT declares `struct QPrivateSignal {}` as a private member and appends it to private
// signals (QTimer::timeout). It cannot be named from outside, so recognise it by its name.
template<typename T>
constexpr bool isPrivateSignalTag()
{
    if constexpr (!std::is_class_v<T> || !std::is_empty_v<T>) {
        return false;
    } else {
        constexpr std::string_view name = __PRETTY_FUNCTION__;
        return name.find("::QPrivateSignal") != std::string_view::npos;
    }
}

template<typename... Ts>
struct TypeList {};

template<typename List, typename... Ts>
struct DropPrivateTag;
template<typename... Kept>
struct DropPrivateTag<TypeList<Kept...>>
{
    using type = TypeList<Kept...>;
};
template<typename... Kept, typename Last>
struct DropPrivateTag<TypeList<Kept...>, Last>
{
    using type = std::conditional_t<isPrivateSignalTag<Last>(), TypeList<Kept...>, TypeList<Kept..., Last>>;
};
template<typename... Kept, typename First, typename Second, typename... Rest>
struct DropPrivateTag<TypeList<Kept...>, First, Second, Rest...>
    : DropPrivateTag<TypeList<Kept..., First>, Second, Rest...>
{};

template<typename Signal>
struct SignalTraits;
template<typename Class, typename... Args>
struct SignalTraits<void (Class::*)(Args...)>
{
    using ClassType = Class;
    using Arguments = typename DropPrivateTag<TypeList<>, std::remove_cvref_t<Args>...>::type;
};

template<typename... Args>
class SignalWaiter final : public Waiter
{
public:
    std::optional<std::tuple<Args...>> value;
    QMetaObject::Connection signalConnection;
    QMetaObject::Connection destroyedConnection;

private:
    void disarm() noexcept override
    {
        QObject::disconnect(signalConnection);
        QObject::disconnect(destroyedConnection);
    }
};

STAGE_EXPORT std::exception_ptr senderDestroyedError();
[[noreturn]] STAGE_EXPORT void throwNullSender();

template<typename Sender, typename Signal, typename ArgList>
class SignalAwaitable;

template<typename Sender, typename Signal, typename... Args>
class SignalAwaitable<Sender, Signal, TypeList<Args...>> : public AwaitableBase
{
    using State = SignalWaiter<Args...>;

public:
    SignalAwaitable(Sender *sender, Signal signal) noexcept : m_sender(sender), m_signal(signal) {}

    bool await_ready() const noexcept { return !m_sender || AwaitableBase::await_ready(); }

    void await_suspend(std::coroutine_handle<> handle)
    {
        markSuspended();
        m_waiter = makeWaiter<State>();
        m_waiter->suspend(handle);
        // No context object, so direct connections: the slots run on the emitting thread and
        // only settle the shared state; publish() posts the resumption to this (the home) thread.
        m_waiter->signalConnection = QObject::connect(
            m_sender, m_signal,
            [w = m_waiter](const Args &...args) {
                if (w->claim()) {
                    w->value.emplace(args...);
                    w->publish(Waiter::Outcome::Value);
                }
            });
        m_waiter->destroyedConnection = QObject::connect(
            m_sender, &QObject::destroyed, [w = m_waiter]() { w->settleError(senderDestroyedError()); });
    }

    auto await_resume()
    {
        throwIfStoppedBeforeSuspending();
        if (!m_waiter)
            throwNullSender();
        m_waiter->rethrowIfFailed();
        if constexpr (sizeof...(Args) == 0)
            return;
        else if constexpr (sizeof...(Args) == 1)
            return std::move(std::get<0>(*m_waiter->value));
        else
            return std::move(*m_waiter->value);
    }

private:
    Sender *m_sender;
    Signal m_signal;
    WaiterRef<State> m_waiter;
};

} // namespace detail

/*!
    Waits for the next emission of \a signal by \a sender and returns its arguments: nothing for
    a signal without arguments, the value for one argument, a std::tuple for several (a private
    signal's QPrivateSignal tag is dropped).

    Thread: \a sender may live on any thread; the coroutine always resumes on the thread that
    awaited (unlike qCoro(), which resumes on the sender's thread). \a sender must be alive when
    the wait begins.
    Cancellation: a cancellation point; on stop the coroutine resumes with stage::Cancelled and a
    later emission is ignored.
    Errors: throws stage::ObjectDestroyed if \a sender is null or is destroyed while waited on.

    \code
    const QString line = co_await stage::signal(reader, &LineReader::lineRead);
    \endcode
*/
template<typename Sender, typename Signal>
    requires std::is_base_of_v<QObject, Sender>
auto signal(Sender *sender, Signal signal) noexcept
{
    using Traits = detail::SignalTraits<Signal>;
    static_assert(std::is_base_of_v<typename Traits::ClassType, Sender>,
                  "stage::signal: the signal does not belong to the sender's class");
    return detail::SignalAwaitable<Sender, Signal, typename Traits::Arguments>(sender, signal);
}

} // namespace stage
