import GunnCtlKit
import Foundation
exit(await GunnCtl.main(Array(CommandLine.arguments.dropFirst())))
