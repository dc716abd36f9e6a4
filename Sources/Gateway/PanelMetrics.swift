import ChatMeshAPI
import CoreMetrics
import MeshRPC
import Synchronization

/// How often each panel section could not be served, and why:
/// `chatmesh_panel_section_unavailable_total{section,code}` — section names and gRPC codes are
/// both fixed sets. A section late past its deadline counts as DEADLINE_EXCEEDED.
public final class PanelMetrics: Sendable {
    private let factory: any MetricsFactory
    private let counters = Mutex<[String: Counter]>([:])

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
    }

    func count(_ unavailable: [UnavailableSection]) {
        guard !unavailable.isEmpty else { return }
        counters.withLock { counters in
            for section in unavailable {
                // Only names the gateway itself gives: a section and a status code name.
                guard PanelSection(rawValue: section.section) != nil, Self.codes.contains(section.code) else { continue }
                let key = section.section + "/" + section.code
                if let counter = counters[key] {
                    counter.increment()
                } else {
                    let counter = Counter(
                        label: "chatmesh_panel_section_unavailable_total", dimensions: [("section", section.section), ("code", section.code)], factory: factory
                    )
                    counters[key] = counter
                    counter.increment()
                }
            }
        }
    }

    private static let codes = Set(RPCError.Code.allCases.map(\.name))
}
