import QtQuick
import StageDemo

// The live event log, newest first.
ListView {
    id: view
    clip: true
    model: DemoController.eventLog
    spacing: 1
    delegate: Item {
        id: entry
        required property string time
        required property string node
        required property string kind
        required property string text
        width: ListView.view.width
        height: line.implicitHeight + 4
        Row {
            id: row
            spacing: 8
            width: parent.width
            Text { text: entry.time; width: 40; horizontalAlignment: Text.AlignRight; color: Theme.muted; font.pixelSize: 12; font.family: Theme.mono }
            Rectangle { width: 8; height: 8; radius: 4; y: 4; color: Theme.kindColor(entry.kind) }
            Text { text: entry.node; width: 74; elide: Text.ElideRight; color: Theme.text; font.pixelSize: 12; font.bold: true }
            Text {
                id: line
                width: row.width - 40 - 8 - 74 - 3 * 8
                text: entry.text
                color: entry.kind === "failure" || entry.kind === "escalation" ? Theme.kindColor(entry.kind) : Theme.text
                font.pixelSize: 12
                elide: Text.ElideRight
            }
        }
    }
}
