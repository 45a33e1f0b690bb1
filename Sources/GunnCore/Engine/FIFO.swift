/// A first-in first-out queue over an array with a moving head: O(1) amortised push and pop,
/// deterministic iteration in arrival order.
struct FIFO<Element: Sendable>: Sendable {
    private var items: [Element] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }
    var first: Element? { isEmpty ? nil : items[head] }

    mutating func push(_ e: Element) { items.append(e) }

    var last: Element? { isEmpty ? nil : items[items.count - 1] }

    /// Changes the newest element in place.
    mutating func updateLast(_ body: (inout Element) -> Void) {
        precondition(!isEmpty)
        body(&items[items.count - 1])
    }

    mutating func pop() -> Element? {
        guard head < items.count else { return nil }
        let e = items[head]
        head += 1
        if head == items.count { items.removeAll(keepingCapacity: true); head = 0 } else if head > 1024 && head * 2 > items.count {
            items.removeFirst(head); head = 0
        }
        return e
    }

    /// Removes the first element matching `predicate` (O(n); used only for cancellation).
    mutating func remove(where predicate: (Element) -> Bool) -> Element? {
        guard let i = items[head...].firstIndex(where: predicate) else { return nil }
        return items.remove(at: i)
    }

    var elements: ArraySlice<Element> { items[head...] }
}
