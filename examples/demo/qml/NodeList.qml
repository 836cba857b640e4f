import QtQuick
import StageDemo

// A plain list of the tree's nodes with their states (stands in until SupervisorView lands).
Column {
    spacing: 4
    Repeater {
        model: DemoController.nodeNames
        Row {
            id: row
            required property string modelData
            readonly property QtObject node: DemoController.node(modelData)
            readonly property int depth: {
                let d = 0
                for (let n = node ? node.supervisor : null; n; n = n.supervisor) ++d
                return d
            }
            spacing: 8
            Item { width: row.depth * 16; height: 1 }
            Rectangle { width: 10; height: 10; radius: 5; y: 4; color: Theme.stateColor(row.node ? row.node.state : 0) }
            Text { text: row.modelData; font.pixelSize: 13; font.bold: true; color: Theme.text; width: 110 - row.depth * 16 }
            Text { text: Theme.stateName(row.node ? row.node.state : undefined); font.pixelSize: 13; color: Theme.text; width: 80 }
        }
    }
}
