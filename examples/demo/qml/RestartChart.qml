import QtQuick
import StageDemo

// Restarts in each top-level subtree over the last minute (DemoController.chart), stacked bars.
Item {
    id: chart
    property var series: DemoController.chart
    readonly property int samples: DemoController.chartSamples
    readonly property real perSecond: 1000 / DemoController.sampleIntervalMs

    onSeriesChanged: canvas.requestPaint()

    Row {
        id: legend
        anchors.right: parent.right
        anchors.top: parent.top
        spacing: 12
        Repeater {
            model: chart.series
            Row {
                id: key
                required property int index
                required property var modelData
                spacing: 4
                Rectangle { width: 10; height: 10; y: 3; color: Theme.seriesColors[key.index % Theme.seriesColors.length] }
                Text { text: key.modelData.name; font.pixelSize: 11; color: Theme.muted }
            }
        }
    }
    Canvas {
        id: canvas
        anchors.fill: parent
        anchors.topMargin: legend.height + 4
        renderStrategy: Canvas.Cooperative
        onPaint: {
            const ctx = getContext("2d")
            ctx.reset()
            const w = width, h = height, left = 28, bottom = 16
            let top = 1
            const count = chart.series.length > 0 ? chart.series[0].values.length : 0
            for (let i = 0; i < count; ++i) {
                let sum = 0
                for (const s of chart.series)
                    sum += s.values[i] * chart.perSecond
                top = Math.max(top, sum)
            }
            top = Math.max(4, Math.ceil(top / 4) * 4)
            ctx.font = "10px sans-serif"
            ctx.fillStyle = Theme.muted
            ctx.strokeStyle = "#e3e7ec"
            ctx.lineWidth = 1
            for (let i = 0; i <= 4; ++i) {
                const y = Math.round(h - bottom - (h - bottom - 4) * i / 4) + 0.5
                ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w, y); ctx.stroke()
                ctx.fillText(String(top * i / 4), 2, y + 3)
            }
            ctx.fillText("-60 s", left, h - 3)
            ctx.fillText("now", w - 22, h - 3)
            // One stacked bar per sample: how many restarts each subtree had in it.
            const step = (w - left) / chart.samples
            const n = chart.series.length > 0 ? chart.series[0].values.length : 0
            for (let i = 0; i < n; ++i) {
                const x = w - (n - i) * step
                let y = h - bottom
                chart.series.forEach(function (s, k) {
                    const v = s.values[i] * chart.perSecond
                    if (!v)
                        return
                    const bar = (h - bottom - 4) * v / top
                    ctx.fillStyle = Theme.seriesColors[k % Theme.seriesColors.length]
                    ctx.fillRect(x + 0.5, y - bar, Math.max(1, step - 1), bar)
                    y -= bar
                })
            }
        }
    }
    Text {
        anchors.left: parent.left; anchors.leftMargin: 30
        anchors.top: canvas.top
        text: "restarts / s"
        font.pixelSize: 10
        color: Theme.muted
    }
}
