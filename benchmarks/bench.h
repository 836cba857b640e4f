#pragma once

// A tiny driver for the workloads of ../shared/peers/WORKLOADS.md: each workload registers a
// function that runs once and returns its figures; the driver runs it once to warm up and then
// five times, and prints the median of each figure as `RESULT <workload> <system> <metric>=<value>`.

#include <QtCore/QString>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace bench {

struct Figure
{
    std::string system; // "stage", or a baseline measured in the same process ("qcoro")
    std::string metric;
    double value;
};

using Run = std::function<std::vector<Figure>()>;

/* Registers a workload (from a static initialiser). */
bool add(const std::string &id, const std::string &description, Run run);

/* Returns to malloc what earlier runs freed, so that memory figures do not reuse it. */
void trimMemory();
/* VmRSS of this process, in bytes. */
long long residentBytes();

} // namespace bench

#define STAGE_BENCH_CONCAT2(a, b) a##b
#define STAGE_BENCH_CONCAT(a, b) STAGE_BENCH_CONCAT2(a, b)
#define STAGE_BENCHMARK(id, description, ...) \
    static const bool STAGE_BENCH_CONCAT(registered_, __LINE__) = bench::add(id, description, __VA_ARGS__)
