/// Who a call acts as, one rule for every service: the request's `staff_id`, else the
/// token's staff member. Agents act as themselves only; owners, admins and the mesh's
/// own services may name anyone (a manager fixing a record, order-svc relaying a
/// staff member's checkout). Which roles may call an RPC at all is its proto's `Access:`
/// line, checked by the route (MethodDescriptor.Access).
extension ServerContext {
    /// The staff member acting; `required` refuses a call that names nobody.
    public func actingStaff(_ requested: String, required: Bool = false) throws(RPCError) -> String {
        try FieldCheck.optionalId(requested, "staff_id")
        let tokenStaff = staffId
        if let principal, principal.role == .agent, !requested.isEmpty, requested != tokenStaff {
            throw .permissionDenied("staff_id: an agent acts as themselves (\(tokenStaff)), not as \(requested)")
        }
        let staff = requested.isEmpty ? tokenStaff : requested
        if required && staff.isEmpty { throw .invalidArgument("staff_id is required (neither the request nor the token names a staff member)") }
        return staff
    }
}
