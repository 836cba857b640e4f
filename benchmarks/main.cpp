#include "bench.h"

#include <QtCore/QCoreApplication>
#include <QtCore/QLoggingCategory>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <malloc.h>

namespace bench {

namespace {
struct Entry
{
    std::string description;
    Run run;
};
std::map<std::string, Entry> &registry()
{
    static std::map<std::string, Entry> map;
    return map;
}
} // namespace

bool add(const std::string &id, const std::string &description, Run run)
{
    auto it = registry().find(id);
    if (it == registry().end()) {
        registry()[id] = Entry{description, std::move(run)};
        return true;
    }
    // A workload registered again (W3 and its actor form live in two files): one run gives both
    // files' figures, measured in the same run.
    it->second.description += "; " + description;
    it->second.run = [first = std::move(it->second.run), second = std::move(run)] {
        std::vector<Figure> figures = first();
        for (auto &figure : second())
            figures.push_back(std::move(figure));
        return figures;
    };
    return true;
}

void trimMemory()
{
    malloc_trim(0);
}

long long residentBytes()
{
    std::ifstream status("/proc/self/status");
    std::string key;
    while (status >> key) {
        if (key == "VmRSS:") {
            long long kb = 0;
            status >> kb;
            return kb * 1024;
        }
        status.ignore(1 << 16, '\n');
    }
    return 0;
}

} // namespace bench

int main(int argc, char **argv)
{
    // Stage's info lines (a failure logged per restart: W5, W6) would cost stderr writes inside
    // the measured spans; warnings still get through.
    QLoggingCategory::setFilterRules(QStringLiteral("stage.*.info=false"));
    QCoreApplication app(argc, argv);
    std::vector<std::string> wanted;
    int repetitions = 5;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--list") {
            for (const auto &[id, entry] : bench::registry())
                std::printf("%s\t%s\n", id.c_str(), entry.description.c_str());
            return 0;
        }
        if (arg == "--quick") {
            repetitions = 1;
            continue;
        }
        wanted.push_back(arg);
    }
    if (wanted.empty()) {
        for (const auto &[id, entry] : bench::registry())
            wanted.push_back(id);
    }
    int status = 0;
    for (const auto &id : wanted) {
        auto it = bench::registry().find(id);
        if (it == bench::registry().end()) {
            std::fprintf(stderr, "stage-bench: no workload %s here (--list shows them)\n", id.c_str());
            status = 1;
            continue;
        }
        std::fprintf(stderr, "stage-bench: %s: %s\n", id.c_str(), it->second.description.c_str());
        it->second.run(); // warm-up
        std::map<std::pair<std::string, std::string>, std::vector<double>> samples;
        std::vector<std::pair<std::string, std::string>> order;
        for (int r = 0; r < repetitions; ++r) {
            for (const auto &f : it->second.run()) {
                auto key = std::make_pair(f.system, f.metric);
                if (!samples.count(key))
                    order.push_back(key);
                samples[key].push_back(f.value);
            }
        }
        for (const auto &key : order) {
            auto &v = samples[key];
            std::sort(v.begin(), v.end());
            const double median = v[v.size() / 2];
            std::printf("RESULT %s %s %s=%.6g\n", id.c_str(), key.first.c_str(), key.second.c_str(), median);
            std::fflush(stdout);
        }
    }
    return status;
}
