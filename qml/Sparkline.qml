import QtQuick

// Restarts per 5 s over the last minute (SupervisionTreeModel's restartSparkline): a bar each.
Canvas {
    id: spark
    // The bar heights, oldest first (any non-negative numbers; scaled to the largest).
    property var values: []
    // The bars' colour.
    property color color: "#d99a1e"

    implicitWidth: 60
    implicitHeight: 16
    onValuesChanged: requestPaint()

    onPaint: {
        const ctx = getContext("2d")
        ctx.reset()
        const n = values ? values.length : 0
        if (n === 0)
            return
        let max = 1
        for (let i = 0; i < n; ++i)
            max = Math.max(max, values[i])
        const w = width / n
        ctx.fillStyle = "#e5e7eb"
        ctx.fillRect(0, height - 1, width, 1)
        ctx.fillStyle = spark.color
        for (let j = 0; j < n; ++j) {
            if (values[j] <= 0)
                continue
            const h = Math.max(2, (height - 1) * values[j] / max)
            ctx.fillRect(j * w + 1, height - 1 - h, Math.max(1, w - 2), h)
        }
    }
}
