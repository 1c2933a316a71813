package tenancyaudit

import (
	"errors"
	"strings"
)

// node is one node of a pg_node_tree: the text PostgreSQL stores for a parsed expression (a
// policy's USING, a constraint's CHECK), e.g. {OPEXPR :opno 98 :args ({VAR ...} {CONST ...})}.
type node struct {
	typ    string
	fields []field
}

// field is one :name and its value: a token, a node, or a list (of nodes and tokens); null (<>)
// is none of them. Tokens after the first (a Const's bytes) are skipped.
type field struct {
	name   string
	tok    string
	child  *node
	list   []any
	isList bool
}

func (n *node) field(name string) *field {
	if n == nil {
		return nil
	}
	for i := range n.fields {
		if n.fields[i].name == name {
			return &n.fields[i]
		}
	}
	return nil
}

// parseNodeTree parses the text of a pg_node_tree.
func parseNodeTree(s string) (*node, error) {
	l := &lexer{s: s}
	tok := l.next()
	if tok == "<>" || tok == "" {
		return nil, nil
	}
	if tok != "{" {
		return nil, errors.New("tenancyaudit: a node tree starts with {")
	}
	return l.node()
}

type lexer struct {
	s string
	i int
}

// next returns the next token, as PostgreSQL's pg_strtok splits them: ( ) { } alone, anything
// else up to white space or one of those, a backslash escaping the character after it.
func (l *lexer) next() string {
	for l.i < len(l.s) && (l.s[l.i] == ' ' || l.s[l.i] == '\n' || l.s[l.i] == '\t' || l.s[l.i] == '\r') {
		l.i++
	}
	if l.i >= len(l.s) {
		return ""
	}
	start := l.i
	switch l.s[l.i] {
	case '(', ')', '{', '}':
		l.i++
		return l.s[start:l.i]
	}
	for l.i < len(l.s) {
		c := l.s[l.i]
		if c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '(' || c == ')' || c == '{' || c == '}' {
			break
		}
		if c == '\\' && l.i+1 < len(l.s) {
			l.i++
		}
		l.i++
	}
	return l.s[start:l.i]
}

func (l *lexer) peek() string {
	i := l.i
	tok := l.next()
	l.i = i
	return tok
}

var errTruncated = errors.New("tenancyaudit: a node tree ends early")

// node reads a node whose { has been read.
func (l *lexer) node() (*node, error) {
	n := &node{typ: l.next(), fields: make([]field, 0, 16)}
	var f *field
	for {
		tok := l.next()
		switch {
		case tok == "":
			return nil, errTruncated
		case tok == "}":
			return n, nil
		case strings.HasPrefix(tok, ":") && len(tok) > 1:
			n.fields = append(n.fields, field{name: tok[1:]})
			f = &n.fields[len(n.fields)-1]
		case f == nil || f.tok != "" || f.child != nil || f.isList:
			if tok == "{" || tok == "(" { // a value beyond the first: read past it
				if _, err := l.value(tok); err != nil {
					return nil, err
				}
			}
		case tok == "{":
			c, err := l.node()
			if err != nil {
				return nil, err
			}
			f.child = c
		case tok == "(":
			list, err := l.value(tok)
			if err != nil {
				return nil, err
			}
			f.list, f.isList = list.([]any), true
		case tok != "<>":
			f.tok = tok
		}
	}
}

func (l *lexer) value(tok string) (any, error) {
	switch tok {
	case "{":
		return l.node()
	case "(":
		list := []any{}
		for {
			t := l.next()
			switch t {
			case "":
				return nil, errTruncated
			case ")":
				return list, nil
			}
			v, err := l.value(t)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
	case "<>":
		return nil, nil
	}
	return tok, nil
}

// str returns a field's value as a token ("" when absent or not a token).
func (n *node) str(name string) string {
	if f := n.field(name); f != nil {
		return f.tok
	}
	return ""
}

// child returns a field's value as a node (nil when absent or null).
func (n *node) child(name string) *node {
	if f := n.field(name); f != nil {
		return f.child
	}
	return nil
}

// list returns a field's value as a list of nodes (nil when absent or null).
func (n *node) list(name string) []*node {
	f := n.field(name)
	if f == nil {
		return nil
	}
	out := make([]*node, 0, len(f.list))
	for _, it := range f.list {
		c, _ := it.(*node)
		out = append(out, c)
	}
	return out
}

// isNull reports whether a field is absent, null (<>) or an empty list.
func (n *node) isNull(name string) bool {
	f := n.field(name)
	return f == nil || (f.tok == "" && f.child == nil && len(f.list) == 0)
}
