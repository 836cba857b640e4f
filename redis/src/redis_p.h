#pragma once

// Stage::Redis internals. Not API.

#include <stage/redis.h>

QT_BEGIN_NAMESPACE
class QUrl;
QT_END_NAMESPACE

namespace stage::detail {

/* A URL taken apart: settings, or an error naming what is wrong; redacted has "***" for the
   password. */
struct ParsedRedisUrl
{
    RedisSettings settings;
    QString error;
    QString redacted;
};
STAGE_REDIS_EXPORT ParsedRedisUrl parseRedisUrl(const QString &url);
STAGE_REDIS_EXPORT QString redactedUrl(const RedisSettings &settings);

} // namespace stage::detail
