pragma Singleton
import QtQuick

// Colours and sizes shared by the demo's components.
QtObject {
    readonly property color window: "#eef0f3"
    readonly property color card: "#ffffff"
    readonly property color border: "#d5dae1"
    readonly property color text: "#1f2933"
    readonly property color muted: "#66727f"
    readonly property color accent: "#2f6fdf"
    readonly property color running: "#2e9d5b"
    readonly property color restarting: "#d99a16"
    readonly property color failed: "#d64545"
    readonly property color stopped: "#8a949e"
    readonly property int gap: 10
    readonly property int radius: 6
    readonly property string mono: "DejaVu Sans Mono"

    readonly property var stateNames: ["Idle", "Starting", "Running", "Restarting", "Stopping", "Stopped", "Failed"]
    function stateName(state) { return state === undefined ? "?" : stateNames[state] }
    function stateColor(state) {
        switch (state) {
        case 2: return running
        case 1: case 3: return restarting
        case 6: return failed
        default: return stopped
        }
    }
    // The colour of an event log entry's kind, and of each subtree in the restart chart.
    function kindColor(kind) {
        switch (kind) {
        case "fault": return accent
        case "failure": return failed
        case "escalation": return "#a3329a"
        case "recovery": return running
        case "dead-letter": return "#b5651d"
        default: return muted
        }
    }
    readonly property var seriesColors: ["#2f6fdf", "#d99a16", "#a3329a", "#2e9d5b", "#d64545"]
}
