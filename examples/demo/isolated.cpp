#include "isolated.h"

#include "democontroller.h"
#include "world.h"

#include <QtCore/QtEndian>

#include <csignal>
#include <cstring>
#include <vector>

#include <unistd.h>

#if defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define STAGE_DEMO_ASAN 1
#  endif
#endif

namespace {

/*
    The "third-party library": a codec that makes an 8x8 thumbnail of an IMG1 image
    ("IMG1" | quint16 width | quint16 height | width x height pixels, big endian). Its bug, the
    kind that crashes real apps: it trusts the header. The row table is sized from the header,
    only the rows present in the data are filled in, and the sampler reads every row the header
    promised: a truncated image makes it read through a null row pointer (SIGSEGV).
*/
namespace fragile_codec {

// A third-party library is not built with the app's sanitizers: neither is this one, so that its
// bug ends the child by SIGSEGV in an ASan/UBSan build too (not by a sanitizer's report).
#if defined(__clang__) || defined(__GNUC__)
#  define FRAGILE_CODEC_UNCHECKED __attribute__((no_sanitize("address", "undefined")))
#else
#  define FRAGILE_CODEC_UNCHECKED
#endif

struct Image
{
    int width = 0, height = 0;
    std::vector<const uchar *> rows; // as many as the header says; nullptr past the data
};

Image open(const QByteArray &data)
{
    if (data.size() < 8 || !data.startsWith("IMG1"))
        throw std::runtime_error("not an IMG1 image");
    Image image;
    image.width = qFromBigEndian<quint16>(data.constData() + 4);
    image.height = qFromBigEndian<quint16>(data.constData() + 6);
    image.rows.assign(size_t(image.height), nullptr);
    const auto *pixels = reinterpret_cast<const uchar *>(data.constData() + 8);
    const qsizetype present = image.width > 0 ? (data.size() - 8) / image.width : 0;
    for (int y = 0; y < image.height && y < present; ++y)
        image.rows[size_t(y)] = pixels + qsizetype(y) * image.width;
    return image;
}

FRAGILE_CODEC_UNCHECKED quint32 thumbnailChecksum(const Image &image)
{
    quint32 sum = 0;
    for (int ty = 0; ty < 8; ++ty) {
        const uchar *row = image.rows[size_t(ty * image.height / 8)]; // the bug: no check
        for (int tx = 0; tx < 8; ++tx)
            sum = sum * 31 + row[tx * image.width / 8];
    }
    return sum;
}

} // namespace fragile_codec

Thumbnail makeThumbnail(const ImageJob &job)
{
#ifdef STAGE_DEMO_ASAN
    // Under ASan the crash should end the child by the signal as in a normal build ("killed by
    // signal 11"), not through ASan's report and exit code 1.
    static const bool reset = [] {
        std::signal(SIGSEGV, SIG_DFL);
        std::signal(SIGBUS, SIG_DFL);
        return true;
    }();
    Q_UNUSED(reset);
#endif
    const fragile_codec::Image image = fragile_codec::open(job.image);
    return Thumbnail{job.id, image.width, image.height, fragile_codec::thumbnailChecksum(image), qint64(::getpid())};
}

} // namespace

namespace isolated {

QByteArray makeImage(QRandomGenerator &random)
{
    const int width = 32 + int(random.bounded(33)), height = 16 + int(random.bounded(33));
    QByteArray data(8 + width * height, Qt::Uninitialized);
    std::memcpy(data.data(), "IMG1", 4);
    qToBigEndian<quint16>(quint16(width), data.data() + 4);
    qToBigEndian<quint16>(quint16(height), data.data() + 6);
    for (int i = 8; i < data.size(); ++i)
        data[i] = char(random.bounded(256));
    return data;
}

QByteArray makePoisonImage()
{
    // 64 rows promised, 4 present.
    const int width = 32, height = 64;
    QByteArray data(8 + width * 4, '\x7f');
    std::memcpy(data.data(), "IMG1", 4);
    qToBigEndian<quint16>(quint16(width), data.data() + 4);
    qToBigEndian<quint16>(quint16(height), data.data() + 6);
    return data;
}

void registerEntries()
{
    stage::registerProcessEntry<ImageJob>(QStringLiteral("thumbnailer"), makeThumbnail);
}

} // namespace isolated

DemoProcessGroup::DemoProcessGroup(QObject *parent) : stage::ProcessGroup(parent) {}

void DemoProcessGroup::setEntry(const QString &entry)
{
    if (m_entry == entry)
        return;
    if (!entryPoint().isEmpty()) {
        qWarning("ProcessGroup: entry cannot change once the group has spawned; ignored");
        return;
    }
    m_entry = entry;
    emit entryChanged();
}

void DemoProcessGroup::componentComplete()
{
    DemoController *controller = DemoController::instance();
    if (!controller) {
        qWarning("ProcessGroup %s: no DemoController", qPrintable(objectName()));
        return;
    }
    if (m_entry == QLatin1String("thumbnailer")) {
        spawn(m_entry, controller->world()->images);
        return;
    }
    qWarning("ProcessGroup %s: no mailbox for the entry point \"%s\" (only \"thumbnailer\")", qPrintable(objectName()),
             qPrintable(m_entry));
}
