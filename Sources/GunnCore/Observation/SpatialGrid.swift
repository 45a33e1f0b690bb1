/// A uniform 2D grid over (x, y) positions: which ids are near a point, without scanning all of
/// them. z is ignored for bucketing and checked exactly by the caller.
public struct SpatialGrid: Sendable {
    public let cellSize: Double
    private var cells: [Cell: [String]] = [:]
    private var cellOf: [String: Cell] = [:]

    struct Cell: Hashable, Sendable { let x: Int, y: Int }

    public init(cellSize: Double) {
        precondition(cellSize > 0 && cellSize.isFinite)
        self.cellSize = cellSize
    }

    public var count: Int { cellOf.count }

    /// A grid of every positioned entity of `world`.
    static func full(_ world: WorldState, cellSize: Double) -> SpatialGrid {
        var g = SpatialGrid(cellSize: cellSize)
        for (id, p) in world.positions { g.move(id, to: p) }
        return g
    }

    func cell(_ p: Position) -> Cell {
        // Clamp so that enormous coordinates cannot overflow Int.
        func c(_ v: Double) -> Int { Int(max(-1e15, min(1e15, (v / cellSize).rounded(.down)))) }
        return Cell(x: c(p.x), y: c(p.y))
    }

    /// Puts `id` at `position`, or takes it out with nil.
    public mutating func move(_ id: String, to position: Position?) {
        let new = position.map(cell)
        let old = cellOf[id]
        if old == new { return }
        if let old {
            cells[old]?.removeAll { $0.utf8.elementsEqual(id.utf8) }
            if cells[old]?.isEmpty == true { cells[old] = nil }
        }
        if let new {
            cells[new, default: []].append(id)
            cellOf[id] = new
        } else {
            cellOf[id] = nil
        }
    }

    /// Every id whose cell intersects the square of half-side `radius` around `center` (a superset
    /// of those within `radius`; the caller checks the exact distance).
    public func candidates(near center: Position, radius: Double, into out: inout [String]) {
        let r = max(0, radius)
        let lo = cell(Position(x: center.x - r, y: center.y - r)), hi = cell(Position(x: center.x + r, y: center.y + r))
        // A radius spanning more cells than the grid holds is cheaper as a full scan.
        let span = (hi.x - lo.x + 1).multipliedReportingOverflow(by: hi.y - lo.y + 1)
        if span.overflow || span.partialValue > cells.count {
            for ids in cells.values { out.append(contentsOf: ids) }
            return
        }
        for x in lo.x...hi.x {
            for y in lo.y...hi.y {
                if let ids = cells[Cell(x: x, y: y)] { out.append(contentsOf: ids) }
            }
        }
    }
}
