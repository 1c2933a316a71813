package tenancycache

// Tenants returns how many tenants m keeps state for. It is for the tests of package
// tenancycache_test: a tenant that holds no entries costs state that Bytes does not count.
func Tenants(m *MemoryStore) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tenants)
}
