#pragma once
// Fault flags the controller sets (GUI thread) and the worker bodies read (their own threads).

#include <QtCore/QString>
#include <QtCore/QStringList>

#include <atomic>
#include <map>
#include <memory>
#include <stdexcept>

/* The exception an injected fault throws. */
class InjectedFault : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

class Faults
{
public:
    /* One set of flags per worker name; the set of names is fixed (read without a lock). */
    explicit Faults(const QStringList &workers)
    {
        for (const QString &name : workers)
            m_flags.emplace(name, std::make_unique<Flags>());
    }

    bool has(const QString &worker) const { return m_flags.count(worker) > 0; }

    void injectThrow(const QString &worker) { flags(worker).throws.fetch_add(1); }
    void injectHang(const QString &worker) { flags(worker).hangs.fetch_add(1); }
    void setStorm(const QString &worker, bool on) { flags(worker).storm.store(on); }

    /* Throws if a throw was injected for \a worker (once per injection). Thread: any. */
    void throwIfInjected(const QString &worker, const char *where)
    {
        if (takeOne(flags(worker).throws))
            throw InjectedFault(std::string("injected fault: thrown ") + where);
    }
    /* True once per injected hang. Thread: any. */
    bool takeHang(const QString &worker) { return takeOne(flags(worker).hangs); }
    /* Throws while a restart storm is on for \a worker: every run fails as it starts. */
    void throwIfStorm(const QString &worker)
    {
        if (flags(worker).storm.load())
            throw InjectedFault("injected fault: restart storm");
    }
    bool isStorm(const QString &worker) const { return m_flags.at(worker)->storm.load(); }

    /* Foreign (uncancellable) hangs in progress: the app waits for them before it exits. */
    std::atomic<int> hangsInProgress{0};

private:
    struct Flags
    {
        std::atomic<int> throws{0};
        std::atomic<int> hangs{0};
        std::atomic<bool> storm{false};
    };
    Flags &flags(const QString &worker) { return *m_flags.at(worker); }
    static bool takeOne(std::atomic<int> &counter)
    {
        int n = counter.load();
        while (n > 0 && !counter.compare_exchange_weak(n, n - 1)) {
        }
        return n > 0;
    }

    std::map<QString, std::unique_ptr<Flags>> m_flags;
};
