#pragma once

// Stage for Qt: everything at once.
#include <stage/actor.h>
#include <stage/connect.h>
#include <stage/consume.h>
#include <stage/errors.h>
#include <stage/future.h>
#include <stage/group.h>
#include <stage/node.h>
#include <stage/guard.h>
#include <stage/mailbox.h>
#include <stage/offload.h>
#include <stage/policy.h>
#include <stage/qfuture.h>
#include <stage/registry.h>
#include <stage/reply.h>
#include <stage/shutdown.h>
#include <stage/signal.h>
#include <stage/sleep.h>
#include <stage/supervisiontreemodel.h>
#include <stage/supervisor.h>
#include <stage/waitfor.h>
#include <stage/worker.h>
